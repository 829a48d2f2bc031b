// Package payloadstats records, per RPC, whether each received message was
// compressed on the wire. grpc-go has no API for that, so a stats handler
// compares a payload's wire length with its decoded length: the interop
// payloads are runs of zeros, which gzip always shrinks.
package payloadstats

import (
	"context"
	"sync"

	"google.golang.org/grpc/stats"
)

type key struct{}

// Call holds the compression flag of every message received on one RPC.
type Call struct {
	mu         sync.Mutex
	compressed []bool
}

// Received returns the flags recorded so far, in arrival order.
func (c *Call) Received() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bool(nil), c.compressed...)
}

// Handler is a stats.Handler that attaches a *Call to every RPC's context.
type Handler struct{}

// TagRPC keeps a record the caller already put in ctx (NewContext), so that a
// unary caller can read it after the call.
func (Handler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	if FromContext(ctx) != nil {
		return ctx
	}
	return NewContext(ctx)
}

// NewContext returns ctx with a fresh record for the next RPC made with it.
func NewContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, key{}, &Call{})
}

func (Handler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	in, ok := s.(*stats.InPayload)
	if !ok {
		return
	}
	if c := FromContext(ctx); c != nil {
		c.mu.Lock()
		c.compressed = append(c.compressed, in.CompressedLength != in.Length)
		c.mu.Unlock()
	}
}

func (Handler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (Handler) HandleConn(context.Context, stats.ConnStats) {}

// FromContext returns the RPC's record, or nil outside a tagged RPC.
func FromContext(ctx context.Context) *Call {
	c, _ := ctx.Value(key{}).(*Call)
	return c
}
