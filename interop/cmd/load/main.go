// Command load drives Thrift Echo servers with a Go Kitex client, for
// bench/interleave.py: it switches all its goroutines from one server to the
// next on a fixed schedule and counts completed calls per time slice.
//
//	load -addr HOST:PORT[,HOST:PORT...] -order 0,1,1,0,... [-slice 500ms] [-settle 50ms]
//	     [-warmup 1s] [-transport framed|ttheader|ttheader_framed|grpc] [-concurrency 64] [-payload 64]
//
// With -transport grpc the servers are gRPC Echo servers (protos/echo/v1/echo.proto, method Unary)
// called with Kitex's gRPC client (transport.GRPC: HTTP/2 connections shared by all goroutines, a
// pool of -grpc-conns per server); the others call
// the Thrift Echo service.
//
// Slice k (of len(-order)) belongs to the server -order[k] indexes. Before
// the first slice (the warm-up) every goroutine calls the first slice's
// server. The first line printed is
//
//	START <unix nanoseconds at which slice 0 begins>
//
// (so a wrapper can read CPU counters at slice boundaries), and the last,
// after the last slice,
//
//	RESULT {"counts":[N,...],"errors":N,"first_error":S}
//
// A call counts for slice k when it was made to slice k's server and
// completed inside slice k, after its first -settle. Each goroutine holds
// one Kitex client per server (default long-connection pool) and has one call
// in flight. Exit status 0 when no call failed, 1 otherwise, 2 for usage
// errors, 3 when the watchdog fires.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/connpool"
	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/transport"

	thriftecho "github.com/kitex-grpc/interop/kitex_gen/echo"
	thriftsvc "github.com/kitex-grpc/interop/kitex_gen/echo/echo"
	"github.com/kitex-grpc/interop/kitex_gen/echopb"
	pbsvc "github.com/kitex-grpc/interop/kitex_gen/echopb/echo"
)

// echoCall makes one call to one server and checks that the reply echoes seq and the payload size.
type echoCall func(seq int64, body []byte) error

type result struct {
	Counts     []int  `json:"counts"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error"`
}

// tally is one goroutine's record: completed calls per slice, and failures.
type tally struct {
	counts     []int
	errors     int
	firstError error
}

func (t *tally) fail(err error) {
	t.errors++
	if t.firstError == nil {
		t.firstError = err
	}
}

func transportOptions(tp string) ([]client.Option, error) {
	switch tp {
	case "framed":
		return []client.Option{client.WithTransportProtocol(transport.Framed)}, nil
	case "ttheader_framed":
		return []client.Option{
			client.WithTransportProtocol(transport.TTHeaderFramed),
			client.WithMetaHandler(transmeta.ClientTTHeaderHandler),
		}, nil
	case "ttheader":
		// PurePayload clears the default (Framed) bit first; see cmd/client.
		return []client.Option{
			client.WithTransportProtocol(transport.PurePayload),
			client.WithTransportProtocol(transport.TTHeader),
			client.WithMetaHandler(transmeta.ClientTTHeaderHandler),
		}, nil
	}
	return nil, fmt.Errorf("unknown -transport %q", tp)
}

func parseOrder(s string, servers int) ([]int, error) {
	var order []int
	for _, field := range strings.Split(s, ",") {
		i, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || i < 0 || i >= servers {
			return nil, fmt.Errorf("-order: %q is not a server index below %d", field, servers)
		}
		order = append(order, i)
	}
	return order, nil
}

func usage(msg string) {
	fmt.Fprintln(os.Stderr, "load:", msg)
	flag.Usage()
	os.Exit(2)
}

func main() {
	addrs := flag.String("addr", "", "comma-separated server addresses host:port (required)")
	orderFlag := flag.String("order", "", "comma-separated server index per slice (required)")
	slice := flag.Duration("slice", 500*time.Millisecond, "length of each slice")
	settle := flag.Duration("settle", 50*time.Millisecond, "time at each slice's start not counted")
	warmup := flag.Duration("warmup", time.Second, "time before the first slice")
	tp := flag.String("transport", "framed", "framed | ttheader | ttheader_framed | grpc")
	concurrency := flag.Int("concurrency", 64, "goroutines, each with one call in flight")
	payload := flag.Int("payload", 64, "bytes in the request's payload field")
	callTimeout := flag.Duration("call-timeout", 5*time.Second, "RPC timeout of each call")
	grpcConns := flag.Int("grpc-conns", 8, "-transport grpc: HTTP/2 connections per server (WithGRPCConnPoolSize)")
	flag.Parse()
	if *addrs == "" || *orderFlag == "" {
		usage("-addr and -order are required")
	}
	if *concurrency < 1 || *payload < 0 || *slice <= 0 || *settle < 0 || *settle >= *slice {
		usage("need -concurrency >= 1, -payload >= 0 and 0 <= -settle < -slice")
	}
	servers := strings.Split(*addrs, ",")
	order, err := parseOrder(*orderFlag, len(servers))
	if err != nil {
		usage(err.Error())
	}
	klog.SetOutput(os.Stderr)
	klog.SetLevel(klog.LevelError)

	var common []client.Option
	if *tp == "grpc" {
		// Several connections, as many clients would open: a server balances connections, not calls.
		common = []client.Option{
			client.WithTransportProtocol(transport.GRPC),
			client.WithGRPCConnPoolSize(uint32(*grpcConns)),
		}
	} else if common, err = transportOptions(*tp); err != nil {
		usage(err.Error())
	}
	clients := make([]echoCall, len(servers))
	for i, addr := range servers {
		opts := append([]client.Option{client.WithHostPorts(addr), client.WithRPCTimeout(*callTimeout)}, common...)
		if *tp != "grpc" {
			// One idle connection per goroutine: after the warm-up no call dials.
			opts = append(opts, client.WithLongConnection(connpool.IdleConfig{
				MaxIdlePerAddress: *concurrency,
				MaxIdleGlobal:     *concurrency,
				MaxIdleTimeout:    time.Minute,
			}))
		}
		if clients[i], err = newEchoCall(*tp, opts); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(2)
		}
	}

	start := time.Now().Add(*warmup)
	end := start.Add(time.Duration(len(order)) * *slice)
	// Hard stop: a wedged server must not hang the caller.
	watchdog := time.AfterFunc(time.Until(end)+2*(*callTimeout)+5*time.Second, func() {
		fmt.Fprintln(os.Stderr, "load: watchdog fired, exiting")
		os.Exit(3)
	})
	defer watchdog.Stop()
	fmt.Printf("START %d\n", start.UnixNano())

	body := bytes.Repeat([]byte{'x'}, *payload)
	tallies := make([]tally, *concurrency)
	var wg sync.WaitGroup
	for w := range tallies {
		wg.Add(1)
		go func(t *tally, seq int64) {
			defer wg.Done()
			t.counts = make([]int, len(order))
			for {
				t0 := time.Now()
				target := order[0]
				if !t0.Before(start) {
					k := int(t0.Sub(start) / *slice)
					if k >= len(order) {
						return
					}
					target = order[k]
				}
				if err := clients[target](seq, body); err != nil {
					t.fail(err)
					return // a failing server must not spin; the error fails the run
				}
				since := time.Since(start)
				if since < 0 {
					continue
				}
				k := int(since / *slice)
				if k < len(order) && order[k] == target && since-time.Duration(k)*(*slice) >= *settle {
					t.counts[k]++
				}
			}
		}(&tallies[w], int64(w))
	}
	wg.Wait()

	res := result{Counts: make([]int, len(order))}
	for _, t := range tallies {
		for k, n := range t.counts {
			res.Counts[k] += n
		}
		res.Errors += t.errors
		if t.firstError != nil && res.FirstError == "" {
			res.FirstError = t.firstError.Error()
		}
	}
	out, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", out)
	if res.Errors > 0 {
		os.Exit(1)
	}
}

func newEchoCall(tp string, opts []client.Option) (echoCall, error) {
	check := func(seq, rseq int64, body, rbody []byte) error {
		if rseq != seq || len(rbody) != len(body) {
			return fmt.Errorf("reply does not echo the request (seq %d, %d payload bytes)", rseq, len(rbody))
		}
		return nil
	}
	if tp == "grpc" {
		c, err := pbsvc.NewClient("echo", opts...)
		if err != nil {
			return nil, err
		}
		return func(seq int64, body []byte) error {
			r, err := c.Unary(context.Background(), &echopb.EchoRequest{Message: "bench", Payload: body, Seq: seq})
			if err != nil {
				return err
			}
			return check(seq, r.Seq, body, r.Payload)
		}, nil
	}
	c, err := thriftsvc.NewClient("echo", opts...)
	if err != nil {
		return nil, err
	}
	return func(seq int64, body []byte) error {
		r, err := c.Echo(context.Background(), &thriftecho.EchoRequest{Message: "bench", Payload: body, Seq: seq})
		if err != nil {
			return err
		}
		return check(seq, r.Seq, body, r.Payload)
	}, nil
}
