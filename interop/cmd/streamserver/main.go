// Command streamserver serves the Thrift StreamService (idl/stream.thrift) with
// code generated WITHOUT -streamx, so its streaming methods are reached over
// gRPC with content-type application/grpc+thrift (and Echo over TTHeader/Framed
// too, by Kitex's per-connection detection).
//
//	streamserver -addr 127.0.0.1:0
//
// prints one stdout line once it serves:
//
//	READY addr=<host:port>
//
// and then one line per handler event the tests wait for:
//
//	EVENT <method> cancelled <ctx error>   a handler saw its ctx end before the stream did
//
// SIGTERM or SIGINT stops it. The handler conventions (keyed on the request
// message) are in ../../README.md, "Thrift streaming".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bytedance/gopkg/cloud/metainfo"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"

	stream "github.com/kitex-grpc/interop/kitex_gen/echostream"
	"github.com/kitex-grpc/interop/kitex_gen/echostream/streamservice"
)

var outMu sync.Mutex

func event(method, kind, detail string) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf("EVENT %s %s %s\n", method, kind, detail)
	os.Stdout.Sync()
}

// failFor is the error a control message asks for, or nil.
func failFor(message string) error {
	switch {
	case strings.HasPrefix(message, "biz:"):
		parts := strings.SplitN(message, ":", 3)
		code, _ := strconv.Atoi(parts[1])
		return kerrors.NewBizStatusErrorWithExtra(int32(code), parts[2], map[string]string{"k": "v"})
	case strings.HasPrefix(message, "error:"):
		return errors.New(strings.TrimPrefix(message, "error:"))
	case strings.HasPrefix(message, "exception:"):
		parts := strings.SplitN(message, ":", 3)
		code, _ := strconv.Atoi(parts[1])
		return &stream.StreamError{Code: int32(code), Message: parts[2]}
	}
	return nil
}

func metaJSON(ctx context.Context) string {
	deadline := int64(-1)
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d).Milliseconds()
	}
	out, _ := json.Marshal(map[string]any{
		"deadline_ms": deadline,
		"persistent":  nonNil(metainfo.GetAllPersistentValues(ctx)),
		"transient":   nonNil(metainfo.GetAllValues(ctx)),
	})
	return string(out)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// block waits until the handler ctx ends and reports it.
func block(ctx context.Context, method string) error {
	<-ctx.Done()
	event(method, "cancelled", ctx.Err().Error())
	return ctx.Err()
}

type handler struct{}

func (handler) Echo(ctx context.Context, req *stream.StreamRequest) (*stream.StreamReply, error) {
	msg := req.Message
	if err := failFor(msg); err != nil {
		return nil, err
	}
	if msg == "meta" {
		return &stream.StreamReply{Message: metaJSON(ctx)}, nil
	}
	if strings.HasPrefix(msg, "sleep:") {
		ms, _ := strconv.Atoi(strings.TrimPrefix(msg, "sleep:"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &stream.StreamReply{Message: msg, Payload: req.Payload, Seq: req.Seq}, nil
}

func (h handler) EchoUnary(ctx context.Context, req *stream.StreamRequest) (*stream.StreamReply, error) {
	return h.Echo(ctx, req)
}

func (handler) EchoServer(req *stream.StreamRequest, st stream.StreamService_EchoServerServer) error {
	ctx := st.Context()
	if req.Message == "meta" {
		return st.Send(&stream.StreamReply{Message: metaJSON(ctx)})
	}
	for i := int32(0); i < req.Count; i++ {
		if err := st.Send(&stream.StreamReply{Message: req.Message, Payload: req.Payload, Seq: int64(i)}); err != nil {
			return err
		}
	}
	if err := failFor(req.Message); err != nil {
		return err
	}
	if req.Message == "block" {
		return block(ctx, "EchoServer")
	}
	return nil
}

func (handler) EchoClient(st stream.StreamService_EchoClientServer) error {
	ctx := st.Context()
	var messages []string
	for {
		req, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				event("EchoClient", "cancelled", ctx.Err().Error())
			}
			return err
		}
		messages = append(messages, req.Message)
		if strings.HasPrefix(req.Message, "error:") {
			return failFor(req.Message)
		}
		if req.Message == "block" {
			return block(ctx, "EchoClient")
		}
	}
	if len(messages) > 0 {
		if err := failFor(messages[len(messages)-1]); err != nil {
			return err
		}
	}
	return st.SendAndClose(&stream.StreamReply{Message: strings.Join(messages, ","), Seq: int64(len(messages))})
}

func (handler) EchoBidi(st stream.StreamService_EchoBidiServer) error {
	ctx := st.Context()
	count := int64(0)
	for {
		req, err := st.Recv()
		if err == io.EOF {
			return st.Send(&stream.StreamReply{Message: "eof", Seq: count})
		}
		if err != nil {
			if ctx.Err() != nil {
				event("EchoBidi", "cancelled", ctx.Err().Error())
			}
			return err
		}
		count++
		msg := req.Message
		if err := failFor(msg); err != nil {
			return err
		}
		switch msg {
		case "block":
			return block(ctx, "EchoBidi")
		case "stop":
			return nil
		case "meta":
			err = st.Send(&stream.StreamReply{Message: metaJSON(ctx)})
		default:
			err = st.Send(&stream.StreamReply{Message: msg, Payload: req.Payload, Seq: req.Seq})
		}
		if err != nil {
			return err
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only); port 0 = pick a free port")
	flag.Parse()
	klog.SetOutput(os.Stderr)
	klog.SetLevel(klog.LevelWarn)

	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintln(os.Stderr, "streamserver: -addr must be a loopback host:port")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamserver: listen:", err)
		os.Exit(1)
	}
	stop := make(chan error)
	started := make(chan struct{}, 1)
	server.RegisterStartHook(func() { started <- struct{}{} })
	svr := streamservice.NewServer(&handler{},
		server.WithListener(ln),
		server.WithExitSignal(func() <-chan error { return stop }),
		server.WithExitWaitTime(time.Second),
		server.WithMetaHandler(transmeta.ServerTTHeaderHandler),
	)
	done := make(chan error, 1)
	go func() { done <- svr.Run() }()
	select {
	case <-started:
	case err := <-done:
		fmt.Fprintln(os.Stderr, "streamserver: run:", err)
		os.Exit(1)
	}
	outMu.Lock()
	fmt.Printf("READY addr=%s\n", ln.Addr())
	os.Stdout.Sync()
	outMu.Unlock()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sigs:
		close(stop)
		<-done
	case err := <-done:
		if err != nil {
			fmt.Fprintln(os.Stderr, "streamserver: run:", err)
			os.Exit(1)
		}
	}
}
