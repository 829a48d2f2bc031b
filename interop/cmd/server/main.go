// Command server runs the Go (Kitex) side of the kitex-grpc interop suite.
//
// It starts two Kitex servers in one process:
//
//   - -pb-addr: the protobuf Echo service (echo.v1.Echo). Kitex detects the
//     protocol per connection, so this one port answers gRPC (HTTP/2) and
//     Kitex Protobuf (TTHeaderFramed).
//   - -thrift-addr: the Thrift Echo service, answering TTHeader,
//     TTHeaderFramed, Framed and Buffered Thrift.
//
// Port 0 is allowed; the actual addresses are printed on one stdout line
//
//	READY pb=<host:port> thrift=<host:port>
//
// once both servers accept connections. Everything else goes to stderr.
// SIGTERM or SIGINT stops both servers and the process exits 0.
//
// Optional:
//
//   - -etcd host:port[,host:port...]: the pb server registers itself with
//     kitex-contrib/registry-etcd under -service-name (Kitex registers about
//     1s after start and deregisters first thing on stop).
//   - -otel: both servers get kitex-contrib/obs-opentelemetry's server suite;
//     finished spans are printed as JSON lines to -otel-spans (or stderr).
//
// The handler conventions are described in ../../README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"
	kitexprom "github.com/kitex-contrib/monitor-prometheus"
	"github.com/kitex-contrib/obs-opentelemetry/tracing"
	etcd "github.com/kitex-contrib/registry-etcd"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	// Registers the "gzip" compressor for gRPC (requests and responses).
	_ "github.com/cloudwego/kitex/pkg/remote/codec/protobuf/encoding/gzip"

	"github.com/kitex-grpc/interop/internal/obs"
	thriftecho "github.com/kitex-grpc/interop/kitex_gen/echo"
	thriftsvc "github.com/kitex-grpc/interop/kitex_gen/echo/echo"
	"github.com/kitex-grpc/interop/kitex_gen/echopb"
	pbsvc "github.com/kitex-grpc/interop/kitex_gen/echopb/echo"
)

// outcome is the transport-neutral result of the shared unary conventions.
type outcome struct {
	message string
	payload []byte
	seq     int64
}

// handleUnary implements the conventions shared by protobuf Unary and
// Thrift echo, keyed on the request message.
func handleUnary(ctx context.Context, message string, payload []byte, seq int64) (*outcome, error) {
	echo := &outcome{message: message, payload: payload, seq: seq}
	switch {
	case strings.HasPrefix(message, "sleep:"):
		ms, err := strconv.Atoi(strings.TrimPrefix(message, "sleep:"))
		if err != nil || ms < 0 {
			return nil, fmt.Errorf("bad sleep value in %q", message)
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return echo, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case strings.HasPrefix(message, "biz:"), strings.HasPrefix(message, "error:"):
		return nil, conventionError(message)
	case message == "meta":
		m, err := metaReport(ctx)
		if err != nil {
			return nil, err
		}
		return &outcome{message: m, payload: payload, seq: seq}, nil
	default:
		return echo, nil
	}
}

// conventionError builds the error for "biz:<code>:<msg>" and "error:<msg>".
// It returns nil for any other message.
func conventionError(message string) error {
	switch {
	case strings.HasPrefix(message, "biz:"):
		parts := strings.SplitN(message, ":", 3)
		if len(parts) != 3 {
			return fmt.Errorf("bad biz message %q, want biz:<code>:<msg>", message)
		}
		code, err := strconv.ParseInt(parts[1], 10, 32)
		if err != nil {
			return fmt.Errorf("bad biz code in %q", message)
		}
		return kerrors.NewBizStatusErrorWithExtra(int32(code), parts[2], map[string]string{"k": "v"})
	case strings.HasPrefix(message, "error:"):
		return errors.New(strings.TrimPrefix(message, "error:"))
	}
	return nil
}

// metaReport returns the JSON the "meta" convention replies with and queues
// a backward value for the caller.
func metaReport(ctx context.Context) (string, error) {
	transient := metainfo.GetAllValues(ctx)
	if transient == nil {
		transient = map[string]string{}
	}
	persistent := metainfo.GetAllPersistentValues(ctx)
	if persistent == nil {
		persistent = map[string]string{}
	}
	deadline := int64(-1)
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d).Milliseconds()
		if deadline < 0 {
			deadline = 0
		}
	}
	// The caller as this server's RPCInfo has it: from TTHeader's FromService/FromMethod
	// (ServerTTHeaderHandler) or gRPC's source-service/source-method (ServerHTTP2Handler, -http2-meta).
	caller := map[string]string{"service": "", "method": ""}
	if ri := rpcinfo.GetRPCInfo(ctx); ri != nil && ri.From() != nil {
		caller["service"] = ri.From().ServiceName()
		caller["method"] = ri.From().Method()
	}
	metainfo.SendBackwardValue(ctx, "backward-key", "backward-value")
	b, err := json.Marshal(map[string]any{
		"transient":   transient,
		"persistent":  persistent,
		"deadline_ms": deadline,
		"caller":      caller,
	})
	return string(b), err
}

// ---- protobuf Echo (gRPC + Kitex Protobuf) ----

type pbEcho struct{}

func (pbEcho) Unary(ctx context.Context, req *echopb.EchoRequest) (*echopb.EchoReply, error) {
	out, err := handleUnary(ctx, req.GetMessage(), req.GetPayload(), req.GetSeq())
	if err != nil {
		return nil, err
	}
	return &echopb.EchoReply{Message: out.message, Payload: out.payload, Seq: out.seq}, nil
}

func (pbEcho) ServerStream(req *echopb.EchoRequest, stream echopb.Echo_ServerStreamServer) error {
	n := req.GetSeq()
	if n <= 0 {
		n = 3
	}
	failure := conventionError(req.GetMessage())
	for i := int64(0); i < n; i++ {
		if err := stream.Send(&echopb.EchoReply{Message: req.GetMessage(), Payload: req.GetPayload(), Seq: i}); err != nil {
			return err
		}
		if failure != nil {
			return failure
		}
	}
	return nil
}

func (pbEcho) ClientStream(stream echopb.Echo_ClientStreamServer) error {
	var msgs []string
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		msgs = append(msgs, req.GetMessage())
	}
	return stream.SendAndClose(&echopb.EchoReply{Message: strings.Join(msgs, ","), Seq: int64(len(msgs))})
}

func (pbEcho) Bidi(stream echopb.Echo_BidiServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&echopb.EchoReply{Message: req.GetMessage(), Payload: req.GetPayload(), Seq: req.GetSeq()}); err != nil {
			return err
		}
	}
}

// ---- Thrift Echo ----

type thriftEcho struct {
	mu         sync.Mutex
	lastNotify string
}

func (h *thriftEcho) Echo(ctx context.Context, req *thriftecho.EchoRequest) (*thriftecho.EchoReply, error) {
	if req == nil {
		req = thriftecho.NewEchoRequest()
	}
	if req.Message == "last-notify" {
		h.mu.Lock()
		defer h.mu.Unlock()
		return &thriftecho.EchoReply{Message: h.lastNotify}, nil
	}
	out, err := handleUnary(ctx, req.Message, req.Payload, req.Seq)
	if err != nil {
		return nil, err
	}
	return &thriftecho.EchoReply{Message: out.message, Payload: out.payload, Seq: out.seq}, nil
}

func (h *thriftEcho) Notify(ctx context.Context, req *thriftecho.EchoRequest) error {
	if req == nil {
		return nil
	}
	h.mu.Lock()
	h.lastNotify = req.Message
	h.mu.Unlock()
	return nil
}

func (h *thriftEcho) Fail(ctx context.Context, req *thriftecho.EchoRequest) (*thriftecho.EchoReply, error) {
	if req == nil {
		req = thriftecho.NewEchoRequest()
	}
	return nil, &thriftecho.EchoError{Code: int32(req.Seq), Message: req.Message}
}

// ---- main ----

func listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("refusing non-loopback listen address %q", addr)
	}
	return net.Listen("tcp", addr)
}

func main() {
	pbAddr := flag.String("pb-addr", "127.0.0.1:0", "listen address of the protobuf Echo server (gRPC + Kitex Protobuf); port 0 = pick a free port")
	thriftAddr := flag.String("thrift-addr", "127.0.0.1:0", "listen address of the Thrift Echo server (TTHeader/Framed/Buffered); port 0 = pick a free port")
	exitWait := flag.Duration("exit-wait", time.Second, "graceful shutdown budget per server")
	etcdEndpoints := flag.String("etcd", "", "comma-separated etcd endpoints host:port; the pb server registers with kitex-contrib/registry-etcd")
	serviceName := flag.String("service-name", "echo", "service name the pb server registers under (used with -etcd)")
	otelOn := flag.Bool("otel", false, "install kitex-contrib/obs-opentelemetry's server suite on both servers")
	otelSpans := flag.String("otel-spans", "", "with -otel: append finished spans as JSON lines to this file (default stderr)")
	promAddr := flag.String("prom-addr", "", "the pb server gets kitex-contrib/monitor-prometheus's server tracer; its page is served at http://<addr>/metrics (port 0 = pick one; READY then says prom=<addr>)")
	http2Meta := flag.Bool("http2-meta", false, "add server.WithMetaHandler(transmeta.ServerHTTP2Handler): read source-service/source-method into RPCInfo")
	flag.Parse()

	klog.SetOutput(os.Stderr)
	klog.SetLevel(klog.LevelWarn)

	otelShutdown := func() {}
	if *otelOn {
		var err error
		if otelShutdown, err = obs.Setup("kitex-interop-go-server", *otelSpans); err != nil {
			fmt.Fprintln(os.Stderr, "server:", err)
			os.Exit(1)
		}
	}

	pbLn, err := listen(*pbAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server: pb listen:", err)
		os.Exit(1)
	}
	thriftLn, err := listen(*thriftAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server: thrift listen:", err)
		os.Exit(1)
	}

	// One channel stops both servers: closing it makes every receive return nil.
	stop := make(chan error)
	exitSignal := func() <-chan error { return stop }

	// Start hooks are global and run once per server after it starts serving.
	started := make(chan struct{}, 2)
	server.RegisterStartHook(func() { started <- struct{}{} })

	common := []server.Option{
		server.WithExitSignal(exitSignal),
		server.WithExitWaitTime(*exitWait),
		server.WithEnableContextTimeout(true),
	}
	if *otelOn {
		// The suite adds the server tracer, the span middleware and both
		// ServerHTTP2Handler and ServerTTHeaderHandler (tracing/suite.go).
		common = append(common, server.WithSuite(tracing.NewServerSuite()))
	} else {
		common = append(common, server.WithMetaHandler(transmeta.ServerTTHeaderHandler))
		if *http2Meta {
			common = append(common, server.WithMetaHandler(transmeta.ServerHTTP2Handler))
		}
	}
	pbOpts := []server.Option{server.WithListener(pbLn)}
	if *etcdEndpoints != "" {
		r, err := etcd.NewEtcdRegistry(strings.Split(*etcdEndpoints, ","))
		if err != nil {
			fmt.Fprintln(os.Stderr, "server: etcd registry:", err)
			os.Exit(1)
		}
		pbOpts = append(pbOpts, server.WithRegistry(r),
			server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: *serviceName}))
	}
	var promLn net.Listener
	if *promAddr != "" {
		// monitor-prometheus serves its own page only on a fixed address; serve its registry on a
		// listener of ours instead, so that port 0 works.
		if promLn, err = listen(*promAddr); err != nil {
			fmt.Fprintln(os.Stderr, "server: prom listen:", err)
			os.Exit(1)
		}
		registry := prom.NewRegistry()
		pbOpts = append(pbOpts, server.WithTracer(kitexprom.NewServerTracer("", "",
			kitexprom.WithRegistry(registry), kitexprom.WithDisableServer(true))))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
		go func() { _ = http.Serve(promLn, mux) }()
	}
	pbServer := pbsvc.NewServer(&pbEcho{}, append(pbOpts, common...)...)
	thriftServer := thriftsvc.NewServer(&thriftEcho{}, append([]server.Option{server.WithListener(thriftLn)}, common...)...)

	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for name, s := range map[string]server.Server{"pb": pbServer, "thrift": thriftServer} {
		wg.Add(1)
		go func(name string, s server.Server) {
			defer wg.Done()
			if err := s.Run(); err != nil {
				errs <- fmt.Errorf("%s server: %w", name, err)
			}
		}(name, s)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	startTimeout := time.NewTimer(30 * time.Second)
	for n := 0; n < 2; {
		select {
		case <-started:
			n++
		case err := <-errs:
			fmt.Fprintln(os.Stderr, "server:", err)
			os.Exit(1)
		case <-startTimeout.C:
			fmt.Fprintln(os.Stderr, "server: servers did not start within 30s")
			os.Exit(1)
		case s := <-sigs:
			fmt.Fprintln(os.Stderr, "server: got", s, "before start")
			os.Exit(1)
		}
	}
	startTimeout.Stop()
	if promLn != nil {
		fmt.Printf("READY pb=%s thrift=%s prom=%s\n", pbLn.Addr(), thriftLn.Addr(), promLn.Addr())
	} else {
		fmt.Printf("READY pb=%s thrift=%s\n", pbLn.Addr(), thriftLn.Addr())
	}
	os.Stdout.Sync()

	code := 0
	select {
	case s := <-sigs:
		fmt.Fprintln(os.Stderr, "server: got", s, "- stopping")
	case err := <-errs:
		fmt.Fprintln(os.Stderr, "server:", err)
		code = 1
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		fmt.Fprintln(os.Stderr, "server:", err)
		code = 1
	}
	otelShutdown()
	os.Exit(code)
}
