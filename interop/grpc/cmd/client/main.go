// Command client runs one gRPC interop test case with grpc-go's own test
// functions (package interop) against -addr, a loopback address. grpc-go has
// no client for the *_compressed_* cases; they are written here from the
// interop spec (doc/interop-test-descriptions.md), with one limit of
// grpc-go's: it compresses a whole call or none of it, so the second message
// of client_compressed_streaming goes compressed too. A failure exits non-zero
// with the reason on stderr; success prints "PASS <case>".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/kitex-grpc/interop-grpc/internal/payloadstats"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

func payload(size int) *testpb.Payload {
	return &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: make([]byte, size)}
}

func wantInvalidArgument(what string, err error) {
	if status.Code(err) != codes.InvalidArgument {
		log.Fatalf("%s: got %v, want INVALID_ARGUMENT", what, err)
	}
}

func clientCompressedUnary(ctx context.Context, tc testgrpc.TestServiceClient) {
	req := &testpb.SimpleRequest{
		ResponseType: testpb.PayloadType_COMPRESSABLE, ResponseSize: 314159, Payload: payload(271828),
		ExpectCompressed: &testpb.BoolValue{Value: true},
	}
	_, err := tc.UnaryCall(ctx, req)
	wantInvalidArgument("uncompressed probe", err)
	for _, compressed := range []bool{true, false} {
		req.ExpectCompressed = &testpb.BoolValue{Value: compressed}
		var opts []grpc.CallOption
		if compressed {
			opts = append(opts, grpc.UseCompressor("gzip"))
		}
		reply, err := tc.UnaryCall(ctx, req, opts...)
		if err != nil {
			log.Fatalf("UnaryCall(compressed=%v): %v", compressed, err)
		}
		if n := len(reply.GetPayload().GetBody()); n != 314159 {
			log.Fatalf("UnaryCall(compressed=%v): payload of %d bytes, want 314159", compressed, n)
		}
	}
}

func serverCompressedUnary(ctx context.Context, tc testgrpc.TestServiceClient) {
	for _, compressed := range []bool{true, false} {
		callCtx := payloadstats.NewContext(ctx)
		reply, err := tc.UnaryCall(callCtx, &testpb.SimpleRequest{
			ResponseType: testpb.PayloadType_COMPRESSABLE, ResponseSize: 314159, Payload: payload(271828),
			ResponseCompressed: &testpb.BoolValue{Value: compressed},
		})
		if err != nil {
			log.Fatalf("UnaryCall(response_compressed=%v): %v", compressed, err)
		}
		if n := len(reply.GetPayload().GetBody()); n != 314159 {
			log.Fatalf("UnaryCall(response_compressed=%v): payload of %d bytes, want 314159", compressed, n)
		}
		if got := payloadstats.FromContext(callCtx).Received(); len(got) != 1 || got[0] != compressed {
			log.Fatalf("UnaryCall(response_compressed=%v): reply compressed flags %v", compressed, got)
		}
	}
}

func clientCompressedStreaming(ctx context.Context, tc testgrpc.TestServiceClient) {
	probe, err := tc.StreamingInputCall(ctx)
	if err != nil {
		log.Fatalf("StreamingInputCall: %v", err)
	}
	if err := probe.Send(&testpb.StreamingInputCallRequest{
		Payload: payload(27182), ExpectCompressed: &testpb.BoolValue{Value: true},
	}); err != nil && err != io.EOF {
		log.Fatalf("probe Send: %v", err)
	}
	_, err = probe.CloseAndRecv()
	wantInvalidArgument("uncompressed probe", err)

	stream, err := tc.StreamingInputCall(ctx, grpc.UseCompressor("gzip"))
	if err != nil {
		log.Fatalf("StreamingInputCall: %v", err)
	}
	for i, m := range []*testpb.StreamingInputCallRequest{
		{Payload: payload(27182), ExpectCompressed: &testpb.BoolValue{Value: true}},
		{Payload: payload(45904), ExpectCompressed: &testpb.BoolValue{Value: false}},
	} {
		if err := stream.Send(m); err != nil {
			log.Fatalf("Send #%d: %v", i, err)
		}
	}
	reply, err := stream.CloseAndRecv()
	if err != nil {
		log.Fatalf("CloseAndRecv: %v", err)
	}
	if got := reply.GetAggregatedPayloadSize(); got != 73086 {
		log.Fatalf("aggregated_payload_size %d, want 73086", got)
	}
}

func serverCompressedStreaming(ctx context.Context, tc testgrpc.TestServiceClient) {
	callCtx := payloadstats.NewContext(ctx)
	stream, err := tc.StreamingOutputCall(callCtx, &testpb.StreamingOutputCallRequest{
		ResponseType: testpb.PayloadType_COMPRESSABLE,
		ResponseParameters: []*testpb.ResponseParameters{
			{Size: 31415, Compressed: &testpb.BoolValue{Value: true}},
			{Size: 92653, Compressed: &testpb.BoolValue{Value: false}},
		},
	})
	if err != nil {
		log.Fatalf("StreamingOutputCall: %v", err)
	}
	for i, want := range []int{31415, 92653} {
		reply, err := stream.Recv()
		if err != nil {
			log.Fatalf("Recv #%d: %v", i, err)
		}
		if n := len(reply.GetPayload().GetBody()); n != want {
			log.Fatalf("Recv #%d: %d bytes, want %d", i, n, want)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		log.Fatalf("after the last reply: %v, want EOF", err)
	}
	got := payloadstats.FromContext(callCtx).Received()
	if len(got) != 2 || !got[0] || got[1] {
		log.Fatalf("compressed flags of the replies %v, want [true false]", got)
	}
}

func main() {
	addr := flag.String("addr", "", "loopback host:port of the TestService")
	testCase := flag.String("case", "", "interop test case name")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("-addr must be a loopback host:port, got %q", *addr)
	}
	conn, err := grpc.NewClient(*addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(payloadstats.Handler{}))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	tc := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch *testCase {
	case "empty_unary":
		interop.DoEmptyUnaryCall(ctx, tc)
	case "large_unary":
		interop.DoLargeUnaryCall(ctx, tc)
	case "client_streaming":
		interop.DoClientStreaming(ctx, tc)
	case "server_streaming":
		interop.DoServerStreaming(ctx, tc)
	case "ping_pong":
		interop.DoPingPong(ctx, tc)
	case "empty_stream":
		interop.DoEmptyStream(ctx, tc)
	case "timeout_on_sleeping_server":
		interop.DoTimeoutOnSleepingServer(ctx, tc)
	case "cancel_after_begin":
		interop.DoCancelAfterBegin(ctx, tc)
	case "cancel_after_first_response":
		interop.DoCancelAfterFirstResponse(ctx, tc)
	case "custom_metadata":
		interop.DoCustomMetadata(ctx, tc)
	case "status_code_and_message":
		interop.DoStatusCodeAndMessage(ctx, tc)
	case "special_status_message":
		interop.DoSpecialStatusMessage(ctx, tc)
	case "unimplemented_method":
		interop.DoUnimplementedMethod(ctx, conn)
	case "unimplemented_service":
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(conn))
	case "client_compressed_unary":
		clientCompressedUnary(ctx, tc)
	case "server_compressed_unary":
		serverCompressedUnary(ctx, tc)
	case "client_compressed_streaming":
		clientCompressedStreaming(ctx, tc)
	case "server_compressed_streaming":
		serverCompressedStreaming(ctx, tc)
	default:
		log.Fatalf("unknown case %q", *testCase)
	}
	fmt.Printf("PASS %s\n", *testCase)
}
