// Command genericjson runs Kitex's own generic JSON converters, without a network, so that tests
// can compare their bytes and JSON with kitex-grpc's (tests/generic/test_kitex_json_mapping.py).
//
// It reads one JSON case per line on stdin and writes one JSON result per line on stdout:
//
//	{"kind": "thrift"|"pb", "idl": "<path>", "include": ["<dir>"], "method": "<name>",
//	 "op": "write"|"read", "json": "<request JSON>", "hex": "<reply body, hex>"}
//
//   - thrift write: JSONThriftGeneric's request writer (pkg/generic/thrift WriteJSON, the
//     default non-dynamicgo converter): the Args struct body of "json", as {"hex": ...}.
//   - thrift read: its reply reader (ReadJSON) on the Result struct body "hex": {"json": ...} or,
//     for an IDL exception, {"error": ...}.
//   - pb write / read: JSONPbGeneric's converters (dynamicgo j2p / p2j, empty conv.Options, as
//     Kitex's JSONPbGeneric has them): the request message bytes, and the JSON of reply bytes.
//
// Any failure is {"error": "..."}; the process goes on with the next line.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/cloudwego/dynamicgo/conv"
	dproto "github.com/cloudwego/dynamicgo/proto"
	"github.com/cloudwego/gopkg/bufiox"
	"github.com/cloudwego/kitex/pkg/generic"
	"github.com/cloudwego/kitex/pkg/generic/descriptor"
	gproto "github.com/cloudwego/kitex/pkg/generic/proto"
	gthrift "github.com/cloudwego/kitex/pkg/generic/thrift"
)

type testCase struct {
	Kind    string   `json:"kind"`
	IDL     string   `json:"idl"`
	Include []string `json:"include"`
	Method  string   `json:"method"`
	Op      string   `json:"op"`
	JSON    string   `json:"json"`
	Hex     string   `json:"hex"`
}

type result struct {
	Hex   *string `json:"hex,omitempty"`
	JSON  *string `json:"json,omitempty"`
	Error *string `json:"error,omitempty"`
}

var (
	thriftSvcs = map[string]*descriptor.ServiceDescriptor{}
	pbSvcs     = map[string]*dproto.ServiceDescriptor{}
)

func thriftService(c *testCase) (*descriptor.ServiceDescriptor, error) {
	if svc, ok := thriftSvcs[c.IDL]; ok {
		return svc, nil
	}
	p, err := generic.NewThriftFileProvider(c.IDL, c.Include...)
	if err != nil {
		return nil, err
	}
	svc := <-p.Provide()
	thriftSvcs[c.IDL] = svc
	return svc, nil
}

func pbService(ctx context.Context, c *testCase) (*dproto.ServiceDescriptor, error) {
	if svc, ok := pbSvcs[c.IDL]; ok {
		return svc, nil
	}
	p, err := generic.NewPbFileProviderWithDynamicGo(c.IDL, ctx, dproto.Options{}, c.Include...)
	if err != nil {
		return nil, err
	}
	svc := <-p.Provide()
	pbSvcs[c.IDL] = svc
	return svc, nil
}

func run(ctx context.Context, c *testCase) (result, error) {
	switch c.Kind + "/" + c.Op {
	case "thrift/write":
		svc, err := thriftService(c)
		if err != nil {
			return result{}, err
		}
		var buf []byte
		w := bufiox.NewBytesWriter(&buf)
		if err := gthrift.NewWriteJSON(svc).Write(ctx, w, c.JSON, c.Method, true, nil); err != nil {
			return result{}, err
		}
		if err := w.Flush(); err != nil {
			return result{}, err
		}
		h := hex.EncodeToString(buf)
		return result{Hex: &h}, nil
	case "thrift/read":
		svc, err := thriftService(c)
		if err != nil {
			return result{}, err
		}
		body, err := hex.DecodeString(c.Hex)
		if err != nil {
			return result{}, err
		}
		out, err := gthrift.NewReadJSON(svc).Read(ctx, c.Method, true, len(body), bufiox.NewBytesReader(body))
		if err != nil {
			return result{}, err
		}
		s := fmt.Sprint(out)
		return result{JSON: &s}, nil
	case "pb/write":
		svc, err := pbService(ctx, c)
		if err != nil {
			return result{}, err
		}
		out, err := gproto.NewWriteJSON(svc, &conv.Options{}).Write(ctx, c.JSON, c.Method, true)
		if err != nil {
			return result{}, err
		}
		h := hex.EncodeToString(out.([]byte))
		return result{Hex: &h}, nil
	case "pb/read":
		svc, err := pbService(ctx, c)
		if err != nil {
			return result{}, err
		}
		body, err := hex.DecodeString(c.Hex)
		if err != nil {
			return result{}, err
		}
		out, err := gproto.NewReadJSON(svc, &conv.Options{}).Read(ctx, c.Method, true, body)
		if err != nil {
			return result{}, err
		}
		s := fmt.Sprint(out)
		return result{JSON: &s}, nil
	}
	return result{}, fmt.Errorf("unknown case %s/%s", c.Kind, c.Op)
}

func main() {
	ctx := context.Background()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c testCase
		var r result
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			msg := err.Error()
			r = result{Error: &msg}
		} else if res, err := run(ctx, &c); err != nil {
			msg := err.Error()
			r = result{Error: &msg}
		} else {
			r = res
		}
		if err := out.Encode(r); err != nil {
			os.Exit(1)
		}
	}
}
