// Command configclient is a Go Kitex client whose governance comes from etcd through
// kitex-contrib/config-etcd's client suite: the Go half of the live-config parity test
// (tests/config/test_interop_go.py).
//
//	configclient -etcd 127.0.0.1:PORT -addr 127.0.0.1:PORT -client NAME -service echo
//
// It prints "READY" once the suite is installed, then reads one request message per stdin line,
// makes one unary Echo call over gRPC with it and prints one JSON line:
//
//	{"ok":bool, "kind":"", "timeout", "circuit_break", "acl" or "other", "error":"..."}
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/cloudwego/kitex/pkg/remote/trans/nphttp2/codes"
	"github.com/cloudwego/kitex/pkg/remote/trans/nphttp2/status"
	"github.com/cloudwego/kitex/pkg/retry"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/transport"
	etcdsuite "github.com/kitex-contrib/config-etcd/client"
	etcdclient "github.com/kitex-contrib/config-etcd/etcd"

	"github.com/kitex-grpc/interop/kitex_gen/echopb"
	pbsvc "github.com/kitex-grpc/interop/kitex_gen/echopb/echo"
)

type result struct {
	OK    bool   `json:"ok"`
	Kind  string `json:"kind"`
	Error string `json:"error"`
}

func kind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, kerrors.ErrRPCTimeout):
		return "timeout"
	case status.Code(err) == codes.DeadlineExceeded:
		// grpc-timeout gives the server the same budget: on a loaded machine its DEADLINE_EXCEEDED
		// can arrive before the client's own timer fires. The call timed out either way.
		return "timeout"
	case errors.Is(err, kerrors.ErrCircuitBreak), errors.Is(err, kerrors.ErrServiceCircuitBreak):
		return "circuit_break"
	case errors.Is(err, kerrors.ErrACL):
		return "acl"
	}
	return "other"
}

func main() {
	etcdAddr := flag.String("etcd", "127.0.0.1:2379", "etcd host:port")
	addr := flag.String("addr", "", "the Python server's host:port")
	clientName := flag.String("client", "go-client", "this client's service name (ClientServiceName)")
	service := flag.String("service", "echo", "the destination service name (ServerServiceName)")
	flag.Parse()
	klog.SetLevel(klog.LevelError)

	etcdCli, err := etcdclient.NewClient(etcdclient.Options{Node: []string{"http://" + *etcdAddr}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(2)
	}
	cli, err := pbsvc.NewClient(*service,
		client.WithHostPorts(*addr),
		client.WithTransportProtocol(transport.GRPC),
		client.WithClientBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: *clientName}),
		// every error is retryable, as in KITEX-WIRE-2.md §15.5; timeouts are retried anyway
		client.WithSpecifiedResultRetry(retry.AllErrorRetry()),
		client.WithSuite(etcdsuite.NewSuite(*service, *clientName, etcdCli)),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(2)
	}
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		_, err := cli.Unary(context.Background(), &echopb.EchoRequest{Message: in.Text()})
		r := result{OK: err == nil, Kind: kind(err)}
		if err != nil {
			r.Error = err.Error()
		}
		_ = out.Encode(r)
	}
}
