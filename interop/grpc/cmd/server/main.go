// Command server runs grpc-go's interop TestService (interop.NewTestServer)
// on a loopback address, with gzip registered, and adds the request and
// response compression checks of the interop spec's *_compressed_* cases,
// which grpc-go's stock server leaves out. It prints "READY addr=<host:port>".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"

	"github.com/kitex-grpc/interop-grpc/internal/payloadstats"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

type server struct {
	testgrpc.TestServiceServer
}

// lastCompressed reports whether the latest message received on ctx's RPC was compressed.
func lastCompressed(ctx context.Context) bool {
	got := payloadstats.FromContext(ctx).Received()
	return len(got) > 0 && got[len(got)-1]
}

func (s server) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if in.GetExpectCompressed().GetValue() && !lastCompressed(ctx) {
		return nil, status.Error(codes.InvalidArgument, "expected a compressed request")
	}
	if in.GetResponseCompressed().GetValue() {
		if err := grpc.SetSendCompressor(ctx, "gzip"); err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
	}
	return s.TestServiceServer.UnaryCall(ctx, in)
}

func (s server) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	sum := 0
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(sum)})
		}
		if err != nil {
			return err
		}
		if in.GetExpectCompressed().GetValue() && !lastCompressed(stream.Context()) {
			return status.Error(codes.InvalidArgument, "expected a compressed message")
		}
		sum += len(in.GetPayload().GetBody())
	}
}

// StreamingOutputCall compresses the whole stream when any response asks for
// it: grpc-go chooses a compressor per call, not per message.
func (s server) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range in.GetResponseParameters() {
		if p.GetCompressed().GetValue() {
			if err := grpc.SetSendCompressor(stream.Context(), "gzip"); err != nil {
				return status.Error(codes.FailedPrecondition, err.Error())
			}
			break
		}
	}
	return s.TestServiceServer.StreamingOutputCall(in, stream)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("-addr must be a loopback host:port, got %q", *addr)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	svr := grpc.NewServer(grpc.StatsHandler(payloadstats.Handler{}))
	testgrpc.RegisterTestServiceServer(svr, server{interop.NewTestServer()})
	fmt.Fprintf(os.Stdout, "READY addr=%s\n", lis.Addr())
	if err := svr.Serve(lis); err != nil {
		log.Fatal(err)
	}
}
