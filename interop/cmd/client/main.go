// Command client is the Go (Kitex) caller of the kitex-grpc interop suite.
//
//	client -addr 127.0.0.1:PORT -transport grpc|ttheader|ttheader_framed|framed|kitexpb -case NAME|all
//	client -etcd 127.0.0.1:PORT -service echo ...   (kitex-contrib/registry-etcd resolver instead of -addr)
//	client -otel [-otel-spans FILE] ...              (kitex-contrib/obs-opentelemetry client suite)
//
// For every case it prints exactly one JSON line on stdout:
//
//	{"case":..., "ok":bool, "result":..., "error":..., "biz_code":..., "biz_message":..., "biz_extra":...}
//
// "ok" means the case's expectation held (for error cases: the expected
// error came back). The exit status is 0 when every case printed ok=true,
// 1 when at least one did not, 2 for usage errors. The case list and the
// meaning of "result" per case are documented in ../../README.md.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/bytedance/gopkg/cloud/metainfo"
	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/client/callopt"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/transport"
	kitexprom "github.com/kitex-contrib/monitor-prometheus"
	"github.com/kitex-contrib/obs-opentelemetry/tracing"
	etcd "github.com/kitex-contrib/registry-etcd"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.opentelemetry.io/otel"
	oteltrace "go.opentelemetry.io/otel/trace"

	// Registers the "gzip" compressor used by the gzip case.
	_ "github.com/cloudwego/kitex/pkg/remote/codec/protobuf/encoding/gzip"

	"github.com/kitex-grpc/interop/internal/obs"
	thriftecho "github.com/kitex-grpc/interop/kitex_gen/echo"
	thriftsvc "github.com/kitex-grpc/interop/kitex_gen/echo/echo"
	"github.com/kitex-grpc/interop/kitex_gen/echopb"
	pbsvc "github.com/kitex-grpc/interop/kitex_gen/echopb/echo"
)

// line is the JSON schema of one output line. Field order is fixed.
type line struct {
	Case       string            `json:"case"`
	OK         bool              `json:"ok"`
	Result     any               `json:"result"`
	Error      *string           `json:"error"`
	BizCode    *int32            `json:"biz_code"`
	BizMessage *string           `json:"biz_message"`
	BizExtra   map[string]string `json:"biz_extra"`
}

// outcome is what a case function reports.
type outcome struct {
	result any
	err    error  // error returned by the call (nil on success)
	ok     bool   // expectation held
	why    string // reason when !ok and there is nothing better in err
}

type caseFn func(ctx context.Context) outcome

// Fixed request values, so servers in any language can check them.
var (
	unaryPayload = []byte{0x00, 0x01, 0x02, 0xfe, 0xff}
	bizMessage   = "biz:1001:bad thing"
)

const (
	bizCode    = 1001
	bizText    = "bad thing"
	timeoutRPC = 100 * time.Millisecond
	sleepMsg   = "sleep:1000"
)

func reply(message string, payload []byte, seq int64) map[string]any {
	return map[string]any{"message": message, "payload_hex": hex.EncodeToString(payload), "seq": seq}
}

func echoed(message string, payload []byte, seq int64, gotMsg string, gotPayload []byte, gotSeq int64) (bool, string) {
	if gotMsg != message || string(gotPayload) != string(payload) || gotSeq != seq {
		return false, fmt.Sprintf("echo mismatch: got (%q, %x, %d) want (%q, %x, %d)", gotMsg, gotPayload, gotSeq, message, payload, seq)
	}
	return true, ""
}

func checkBiz(err error) (bool, string) {
	be, ok := kerrors.FromBizStatusError(err)
	if !ok {
		return false, "expected a BizStatusError"
	}
	if be.BizStatusCode() != bizCode || be.BizMessage() != bizText || be.BizExtra()["k"] != "v" {
		return false, fmt.Sprintf("biz error mismatch: code=%d msg=%q extra=%v", be.BizStatusCode(), be.BizMessage(), be.BizExtra())
	}
	return true, ""
}

// checkTimeout accepts either the client's own RPC timeout (kind
// "client_timeout") or an error the server returned because its handler
// deadline, propagated from the client timeout, expired first (kind
// "server_deadline"). Kitex itself races these two over TTHeader, and a gRPC
// server that enforces the propagated grpc-timeout races them the same way.
func checkTimeout(err error, elapsed time.Duration) outcome {
	res := map[string]any{"elapsed_ms": elapsed.Milliseconds(), "kind": nil}
	switch {
	case err == nil:
		return outcome{result: res, why: "expected a timeout, call succeeded"}
	case kerrors.IsTimeoutError(err) || errors.Is(err, kerrors.ErrRPCTimeout):
		res["kind"] = "client_timeout"
	case strings.Contains(strings.ToLower(err.Error()), "deadline exceeded"),
		strings.Contains(err.Error(), "code = 4 "): // gRPC DEADLINE_EXCEEDED sent by the server
		res["kind"] = "server_deadline"
	default:
		return outcome{result: res, err: err, why: "expected a timeout error"}
	}
	if elapsed >= 900*time.Millisecond {
		return outcome{result: res, err: err, why: "timeout fired too late"}
	}
	return outcome{result: res, err: err, ok: true}
}

// metaCtx sets the metainfo the metainfo cases send.
func metaCtx(ctx context.Context) context.Context {
	ctx = metainfo.WithValue(ctx, "temp", "t1")
	ctx = metainfo.WithPersistentValue(ctx, "PERSIST_KEY", "p1")
	return metainfo.WithBackwardValues(ctx)
}

// checkMeta parses the "meta" reply and checks that t1 and p1 arrived (under
// any key casing) and, when wantBackward, that the backward value came back.
func checkMeta(ctx context.Context, replyMsg string, err error, wantBackward bool) outcome {
	backward := metainfo.RecvAllBackwardValues(ctx)
	if backward == nil {
		backward = map[string]string{}
	}
	res := map[string]any{"backward": backward}
	if err != nil {
		return outcome{result: res, err: err}
	}
	var rep struct {
		Transient  map[string]string `json:"transient"`
		Persistent map[string]string `json:"persistent"`
		DeadlineMS int64             `json:"deadline_ms"`
	}
	if e := json.Unmarshal([]byte(replyMsg), &rep); e != nil {
		res["raw_reply"] = replyMsg
		return outcome{result: res, why: "meta reply is not JSON: " + e.Error()}
	}
	res["server"] = rep
	has := func(m map[string]string, key, val string) bool {
		for k, v := range m {
			if strings.EqualFold(k, key) && v == val {
				return true
			}
		}
		return false
	}
	switch {
	case !has(rep.Transient, "temp", "t1"):
		return outcome{result: res, why: "transient temp=t1 not seen by server"}
	case !has(rep.Persistent, "PERSIST_KEY", "p1"):
		return outcome{result: res, why: "persistent PERSIST_KEY=p1 not seen by server"}
	case wantBackward && backward["backward-key"] != "backward-value":
		return outcome{result: res, why: "backward-key=backward-value not received"}
	}
	return outcome{result: res, ok: true}
}

// traceCase runs call (which sends the "meta" message) under a root span
// "interop.trace", so the client span Kitex starts is its child; the result
// carries the trace id (to find the spans in the -otel-spans output) and the
// transient metainfo the server saw (which shows the propagation keys).
func traceCase(ctx context.Context, call func(ctx context.Context) (string, error)) outcome {
	if !otelEnabled {
		return outcome{why: "the trace case needs -otel"}
	}
	ctx, span := otel.Tracer("kitex-interop-go-client").Start(ctx, "interop.trace", oteltrace.WithSpanKind(oteltrace.SpanKindInternal))
	msg, err := call(ctx)
	span.End()
	res := map[string]any{"trace_id": span.SpanContext().TraceID().String(), "root_span_id": span.SpanContext().SpanID().String()}
	if err != nil {
		return outcome{result: res, err: err}
	}
	var rep struct {
		Transient map[string]string `json:"transient"`
	}
	if e := json.Unmarshal([]byte(msg), &rep); e != nil {
		res["raw_reply"] = msg
		return outcome{result: res, why: "meta reply is not JSON: " + e.Error()}
	}
	res["server_transient"] = rep.Transient
	for k := range rep.Transient {
		if strings.EqualFold(k, "traceparent") {
			return outcome{result: res, ok: true}
		}
	}
	return outcome{result: res, why: "the server saw no traceparent in transient metainfo"}
}

// otelEnabled is set by -otel.
var otelEnabled bool

// ---- protobuf cases (grpc and kitexpb) ----

func pbCases(c pbsvc.Client, grpc bool) (map[string]caseFn, []string) {
	unary := func(ctx context.Context, msg string, opts ...callopt.Option) (*echopb.EchoReply, error) {
		return c.Unary(ctx, &echopb.EchoRequest{Message: msg, Payload: unaryPayload, Seq: 42}, opts...)
	}
	cases := map[string]caseFn{
		"unary": func(ctx context.Context) outcome {
			r, err := unary(ctx, "hello")
			if err != nil {
				return outcome{err: err}
			}
			ok, why := echoed("hello", unaryPayload, 42, r.Message, r.Payload, r.Seq)
			return outcome{result: reply(r.Message, r.Payload, r.Seq), ok: ok, why: why}
		},
		"biz_error": func(ctx context.Context) outcome {
			r, err := unary(ctx, bizMessage)
			var res any
			if r != nil {
				res = reply(r.Message, r.Payload, r.Seq)
			}
			ok, why := checkBiz(err)
			return outcome{result: res, err: err, ok: ok, why: why}
		},
		"plain_error": func(ctx context.Context) outcome {
			_, err := unary(ctx, "error:boom")
			if err == nil {
				return outcome{why: "expected an error"}
			}
			if _, isBiz := kerrors.FromBizStatusError(err); isBiz {
				return outcome{err: err, why: "expected a non-biz error"}
			}
			return outcome{err: err, ok: strings.Contains(err.Error(), "boom"), why: "error text lacks 'boom'"}
		},
		"trace": func(ctx context.Context) outcome {
			return traceCase(ctx, func(ctx context.Context) (string, error) {
				r, err := unary(ctx, "meta", callopt.WithRPCTimeout(5*time.Second))
				if err != nil {
					return "", err
				}
				return r.Message, nil
			})
		},
	}
	order := []string{"unary", "biz_error", "plain_error"}
	if !grpc {
		return cases, order
	}
	cases["server_stream"] = func(ctx context.Context) outcome {
		st, err := c.ServerStream(ctx, &echopb.EchoRequest{Message: "stream", Seq: 5})
		if err != nil {
			return outcome{err: err}
		}
		var got []map[string]any
		for {
			r, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return outcome{result: got, err: err}
			}
			got = append(got, map[string]any{"message": r.Message, "seq": r.Seq})
		}
		if len(got) != 5 {
			return outcome{result: got, why: fmt.Sprintf("got %d messages, want 5", len(got))}
		}
		for i, g := range got {
			if g["message"] != "stream" || g["seq"] != int64(i) {
				return outcome{result: got, why: fmt.Sprintf("message %d wrong", i)}
			}
		}
		return outcome{result: got, ok: true}
	}
	cases["server_stream_biz_error"] = func(ctx context.Context) outcome {
		st, err := c.ServerStream(ctx, &echopb.EchoRequest{Message: bizMessage, Seq: 5})
		if err != nil {
			return outcome{err: err, why: "stream setup failed"}
		}
		var got []map[string]any
		for {
			r, err := st.Recv()
			if err == io.EOF {
				return outcome{result: got, why: "stream ended without the biz error"}
			}
			if err != nil {
				ok, why := checkBiz(err)
				if ok && len(got) != 1 {
					ok, why = false, fmt.Sprintf("got %d messages before the error, want 1", len(got))
				}
				return outcome{result: got, err: err, ok: ok, why: why}
			}
			got = append(got, map[string]any{"message": r.Message, "seq": r.Seq})
		}
	}
	cases["client_stream"] = func(ctx context.Context) outcome {
		st, err := c.ClientStream(ctx)
		if err != nil {
			return outcome{err: err}
		}
		for i, m := range []string{"a", "b", "c"} {
			if err := st.Send(&echopb.EchoRequest{Message: m, Seq: int64(i)}); err != nil {
				return outcome{err: err}
			}
		}
		r, err := st.CloseAndRecv()
		if err != nil {
			return outcome{err: err}
		}
		res := map[string]any{"message": r.Message, "seq": r.Seq}
		if r.Message != "a,b,c" || r.Seq != 3 {
			return outcome{result: res, why: "want message a,b,c and seq 3"}
		}
		return outcome{result: res, ok: true}
	}
	cases["bidi"] = func(ctx context.Context) outcome {
		st, err := c.Bidi(ctx)
		if err != nil {
			return outcome{err: err}
		}
		var got []map[string]any
		for i, m := range []string{"x", "y", "z"} {
			if err := st.Send(&echopb.EchoRequest{Message: m, Seq: int64(i + 1)}); err != nil {
				return outcome{result: got, err: err}
			}
			r, err := st.Recv()
			if err != nil {
				return outcome{result: got, err: err}
			}
			got = append(got, map[string]any{"message": r.Message, "seq": r.Seq})
			if r.Message != m || r.Seq != int64(i+1) {
				return outcome{result: got, why: fmt.Sprintf("reply %d mismatch", i)}
			}
		}
		if err := st.Close(); err != nil {
			return outcome{result: got, err: err}
		}
		if _, err := st.Recv(); err != io.EOF {
			return outcome{result: got, err: err, why: "expected io.EOF after close"}
		}
		return outcome{result: got, ok: true}
	}
	cases["metainfo"] = func(ctx context.Context) outcome {
		ctx = metaCtx(ctx)
		r, err := unary(ctx, "meta", callopt.WithRPCTimeout(5*time.Second))
		msg := ""
		if r != nil {
			msg = r.Message
		}
		return checkMeta(ctx, msg, err, false)
	}
	cases["deadline"] = func(ctx context.Context) outcome {
		start := time.Now()
		_, err := unary(ctx, sleepMsg, callopt.WithRPCTimeout(timeoutRPC))
		return checkTimeout(err, time.Since(start))
	}
	cases["gzip"] = func(ctx context.Context) outcome {
		payload := []byte(strings.Repeat("compress me ", 512))
		r, err := c.Unary(ctx, &echopb.EchoRequest{Message: "gzip", Payload: payload, Seq: 7}, callopt.WithGRPCCompressor("gzip"))
		if err != nil {
			return outcome{err: err}
		}
		ok, why := echoed("gzip", payload, 7, r.Message, r.Payload, r.Seq)
		return outcome{result: map[string]any{"message": r.Message, "payload_len": len(r.Payload), "seq": r.Seq}, ok: ok, why: why}
	}
	order = []string{"unary", "server_stream", "client_stream", "bidi", "biz_error", "metainfo", "deadline", "gzip", "plain_error", "server_stream_biz_error"}
	return cases, order
}

// kitexPBClient implements the unary part of pbsvc.Client over a plain
// client.Client (Kitex Protobuf, not gRPC).
type kitexPBClient struct{ c client.Client }

func (k kitexPBClient) Unary(ctx context.Context, req *echopb.EchoRequest, opts ...callopt.Option) (*echopb.EchoReply, error) {
	ctx = client.NewCtxWithCallOptions(ctx, opts)
	args, res := &pbsvc.UnaryArgs{Req: req}, &pbsvc.UnaryResult{}
	if err := k.c.Call(ctx, "Unary", args, res); err != nil {
		return nil, err
	}
	return res.GetSuccess(), nil
}

func (k kitexPBClient) ServerStream(context.Context, *echopb.EchoRequest, ...callopt.Option) (pbsvc.Echo_ServerStreamClient, error) {
	return nil, errors.New("streaming is not available over Kitex Protobuf")
}

func (k kitexPBClient) ClientStream(context.Context, ...callopt.Option) (pbsvc.Echo_ClientStreamClient, error) {
	return nil, errors.New("streaming is not available over Kitex Protobuf")
}

func (k kitexPBClient) Bidi(context.Context, ...callopt.Option) (pbsvc.Echo_BidiClient, error) {
	return nil, errors.New("streaming is not available over Kitex Protobuf")
}

// ---- thrift cases (ttheader, ttheader_framed, framed) ----

func thriftCases(c thriftsvc.Client, ttheader bool) (map[string]caseFn, []string) {
	cases := map[string]caseFn{
		"echo": func(ctx context.Context) outcome {
			r, err := c.Echo(ctx, &thriftecho.EchoRequest{Message: "hello", Payload: unaryPayload, Seq: 42})
			if err != nil {
				return outcome{err: err}
			}
			ok, why := echoed("hello", unaryPayload, 42, r.Message, r.Payload, r.Seq)
			return outcome{result: reply(r.Message, r.Payload, r.Seq), ok: ok, why: why}
		},
		"oneway": func(ctx context.Context) outcome {
			want := fmt.Sprintf("notify-%d", time.Now().UnixNano())
			if err := c.Notify(ctx, &thriftecho.EchoRequest{Message: want}); err != nil {
				return outcome{err: err}
			}
			// The oneway call returns before the server has handled it, so
			// poll "last-notify" for a bounded time.
			deadline := time.Now().Add(3 * time.Second)
			last := ""
			for attempt := 1; ; attempt++ {
				r, err := c.Echo(ctx, &thriftecho.EchoRequest{Message: "last-notify"})
				if err != nil {
					return outcome{err: err}
				}
				last = r.Message
				if last == want {
					return outcome{result: map[string]any{"sent": want, "last_notify": last, "polls": attempt}, ok: true}
				}
				if time.Now().After(deadline) {
					return outcome{result: map[string]any{"sent": want, "last_notify": last, "polls": attempt}, why: "notify not recorded within 3s"}
				}
				t := time.NewTimer(20 * time.Millisecond)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return outcome{err: ctx.Err()}
				}
			}
		},
		"exception": func(ctx context.Context) outcome {
			_, err := c.Fail(ctx, &thriftecho.EchoRequest{Message: "boom", Seq: 7})
			var ee *thriftecho.EchoError
			if !errors.As(err, &ee) {
				return outcome{err: err, why: "expected EchoError"}
			}
			res := map[string]any{"code": ee.Code, "message": ee.Message}
			if ee.Code != 7 || ee.Message != "boom" {
				return outcome{result: res, err: err, why: "want EchoError{7, boom}"}
			}
			return outcome{result: res, err: err, ok: true}
		},
		"app_error": func(ctx context.Context) outcome {
			_, err := c.Echo(ctx, &thriftecho.EchoRequest{Message: "error:boom"})
			if err == nil {
				return outcome{why: "expected an error"}
			}
			return outcome{err: err, ok: strings.Contains(err.Error(), "boom"), why: "error text lacks 'boom'"}
		},
		"timeout": func(ctx context.Context) outcome {
			start := time.Now()
			_, err := c.Echo(ctx, &thriftecho.EchoRequest{Message: sleepMsg}, callopt.WithRPCTimeout(timeoutRPC))
			return checkTimeout(err, time.Since(start))
		},
		"biz_error": func(ctx context.Context) outcome {
			r, err := c.Echo(ctx, &thriftecho.EchoRequest{Message: bizMessage})
			var res any
			if r != nil {
				res = reply(r.Message, r.Payload, r.Seq)
			}
			ok, why := checkBiz(err)
			return outcome{result: res, err: err, ok: ok, why: why}
		},
		"metainfo": func(ctx context.Context) outcome {
			ctx = metaCtx(ctx)
			r, err := c.Echo(ctx, &thriftecho.EchoRequest{Message: "meta"}, callopt.WithRPCTimeout(5*time.Second))
			msg := ""
			if r != nil {
				msg = r.Message
			}
			return checkMeta(ctx, msg, err, true)
		},
		"trace": func(ctx context.Context) outcome {
			return traceCase(ctx, func(ctx context.Context) (string, error) {
				r, err := c.Echo(ctx, &thriftecho.EchoRequest{Message: "meta"}, callopt.WithRPCTimeout(5*time.Second))
				if err != nil {
					return "", err
				}
				return r.Message, nil
			})
		},
	}
	order := []string{"echo", "oneway", "exception", "app_error", "timeout"}
	if ttheader {
		order = append(order, "biz_error", "metainfo")
	}
	return cases, order
}

func errString(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

func run(name string, fn caseFn, perCase time.Duration) line {
	ctx, cancel := context.WithTimeout(context.Background(), perCase)
	defer cancel()
	o := fn(ctx)
	l := line{Case: name, OK: o.ok, Result: o.result, Error: errString(o.err)}
	if be, ok := kerrors.FromBizStatusError(o.err); ok {
		code, msg := be.BizStatusCode(), be.BizMessage()
		l.BizCode, l.BizMessage, l.BizExtra = &code, &msg, be.BizExtra()
	}
	if !o.ok && o.why != "" {
		s := "check failed: " + o.why
		if l.Error != nil {
			s = *l.Error + " | " + s
		}
		l.Error = &s
	}
	return l
}

func main() {
	addr := flag.String("addr", "", "server address host:port (required)")
	tp := flag.String("transport", "grpc", "grpc | ttheader | ttheader_framed | framed | kitexpb")
	caseName := flag.String("case", "all", "case name or 'all'")
	service := flag.String("service", "echo", "destination service name (gRPC :authority)")
	perCase := flag.Duration("case-timeout", 10*time.Second, "upper bound for one case")
	list := flag.Bool("list", false, "print the cases of -transport that 'all' runs, one per line, and exit")
	etcdEndpoints := flag.String("etcd", "", "comma-separated etcd endpoints host:port: find -service with kitex-contrib/registry-etcd instead of -addr")
	otelOn := flag.Bool("otel", false, "install kitex-contrib/obs-opentelemetry's client suite")
	otelSpans := flag.String("otel-spans", "", "with -otel: append finished spans as JSON lines to this file (default stderr)")
	http2Meta := flag.Bool("http2-meta", false, "grpc: add client.WithMetaHandler(transmeta.ClientHTTP2Handler): send source-/destination-service/-method")
	fromService := flag.String("from-service", "", "the client's own service name (client.WithClientBasicInfo)")
	promOut := flag.String("prom-out", "", "install kitex-contrib/monitor-prometheus's client tracer and write its page (text format) to this file after the cases")
	flag.Parse()

	klog.SetOutput(os.Stderr)
	klog.SetLevel(klog.LevelError)

	var opts []client.Option
	if *etcdEndpoints != "" {
		if *addr != "" {
			usage("give -addr or -etcd, not both")
		}
		r, err := etcd.NewEtcdResolver(strings.Split(*etcdEndpoints, ","))
		if err != nil {
			fatal(err)
		}
		opts = append(opts, client.WithResolver(r))
	} else {
		opts = append(opts, client.WithHostPorts(*addr))
	}
	var promRegistry *prom.Registry
	if *promOut != "" {
		promRegistry = prom.NewRegistry()
		opts = append(opts, client.WithTracer(kitexprom.NewClientTracer("", "",
			kitexprom.WithRegistry(promRegistry), kitexprom.WithDisableServer(true))))
	}
	if *fromService != "" {
		opts = append(opts, client.WithClientBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: *fromService}))
	}
	otelEnabled = *otelOn
	if *otelOn {
		shutdown, err := obs.Setup("kitex-interop-go-client", *otelSpans)
		if err != nil {
			fatal(err)
		}
		defer shutdown()
	}
	// ttMeta is the TTHeader meta handler; with -otel the suite brings its own.
	ttMeta := []client.Option{client.WithMetaHandler(transmeta.ClientTTHeaderHandler)}
	if *otelOn {
		ttMeta = nil
	}
	var cases map[string]caseFn
	var order []string
	switch *tp {
	case "grpc":
		opts = append(opts, client.WithTransportProtocol(transport.GRPC))
		if *http2Meta {
			opts = append(opts, client.WithMetaHandler(transmeta.ClientHTTP2Handler))
		}
		if *otelOn {
			opts = append(opts, client.WithSuite(tracing.NewGRPCClientSuite()))
		}
		c, err := pbsvc.NewClient(*service, opts...)
		if err != nil {
			fatal(err)
		}
		cases, order = pbCases(c, true)
	case "kitexpb":
		// The generated pbsvc.NewClient always adds transport.GRPC because the
		// service has streaming methods, and WithTransportProtocol ORs bits
		// into the config, so it cannot be turned off. Build the client from
		// the service info instead: Kitex then uses TTHeaderFramed for protobuf.
		opts = append(opts, client.WithDestService(*service), client.WithTransportProtocol(transport.TTHeaderFramed))
		opts = append(opts, ttMeta...)
		if *otelOn {
			// NewClientSuite ORs in transport.TTHeader: still TTHeaderFramed.
			opts = append(opts, client.WithSuite(tracing.NewClientSuite()))
		}
		kc, err := client.NewClient(pbsvc.NewServiceInfo(), opts...)
		if err != nil {
			fatal(err)
		}
		cases, order = pbCases(kitexPBClient{kc}, false)
	case "ttheader", "ttheader_framed", "framed":
		switch *tp {
		case "ttheader":
			// WithTransportProtocol ORs bits into the default (Framed), so
			// WithTransportProtocol(TTHeader) alone yields TTHeaderFramed on the
			// wire. PurePayload first clears the default, giving unframed TTHeader.
			opts = append(opts, client.WithTransportProtocol(transport.PurePayload), client.WithTransportProtocol(transport.TTHeader))
			opts = append(opts, ttMeta...)
		case "ttheader_framed":
			opts = append(opts, client.WithTransportProtocol(transport.TTHeaderFramed))
			opts = append(opts, ttMeta...)
		case "framed":
			opts = append(opts, client.WithTransportProtocol(transport.Framed))
		}
		if *otelOn {
			if *tp == "framed" {
				opts = append(opts, client.WithSuite(tracing.NewFramedClientSuite()))
			} else {
				// NewClientSuite ORs in transport.TTHeader, which keeps the
				// framing chosen above (TTHeader or TTHeaderFramed).
				opts = append(opts, client.WithSuite(tracing.NewClientSuite()))
			}
		}
		c, err := thriftsvc.NewClient(*service, opts...)
		if err != nil {
			fatal(err)
		}
		cases, order = thriftCases(c, *tp != "framed")
	default:
		usage("unknown -transport " + *tp)
	}
	if *list {
		for _, n := range order {
			fmt.Println(n)
		}
		return
	}
	if *addr == "" && *etcdEndpoints == "" {
		usage("-addr (or -etcd) is required")
	}

	names := order
	if *caseName != "all" {
		if _, ok := cases[*caseName]; !ok {
			known := make([]string, 0, len(cases))
			for n := range cases {
				known = append(known, n)
			}
			sort.Strings(known)
			msg := fmt.Sprintf("unknown case %q for transport %s (known: %s)", *caseName, *tp, strings.Join(known, ", "))
			emit(line{Case: *caseName, Error: &msg})
			os.Exit(1)
		}
		names = []string{*caseName}
	}

	// Hard stop so a wedged call can never hang the caller.
	watchdog := time.AfterFunc(time.Duration(len(names)+1)*(*perCase), func() {
		fmt.Fprintln(os.Stderr, "client: watchdog fired, exiting")
		os.Exit(3)
	})
	defer watchdog.Stop()

	allOK := true
	for _, n := range names {
		l := run(n, cases[n], *perCase)
		allOK = allOK && l.OK
		emit(l)
	}
	if promRegistry != nil {
		if err := writePromPage(promRegistry, *promOut); err != nil {
			fatal(err)
		}
	}
	if !allOK {
		os.Exit(1)
	}
}

// writePromPage writes the registry as Prometheus text, as promhttp would serve it.
func writePromPage(registry *prom.Registry, path string) error {
	families, err := registry.Gather()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, family := range families {
		if _, err := expfmt.MetricFamilyToText(f, family); err != nil {
			return err
		}
	}
	return nil
}

func emit(l line) {
	b, err := json.Marshal(l)
	if err != nil {
		msg := "cannot encode result: " + err.Error()
		b, _ = json.Marshal(line{Case: l.Case, Error: &msg})
	}
	os.Stdout.Write(append(b, '\n'))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "client:", err)
	os.Exit(2)
}

func usage(msg string) {
	fmt.Fprintln(os.Stderr, "client:", msg)
	flag.Usage()
	os.Exit(2)
}
