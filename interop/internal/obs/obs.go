// Package obs sets up OpenTelemetry for the interop binaries' -otel flag:
// a global tracer provider whose exporter prints every finished span as one
// JSON line, and the global propagator that kitex-contrib/obs-opentelemetry's
// provider package installs by default (b3, ot, baggage, W3C trace context).
//
// obs-opentelemetry's tracing suites take the tracer provider and the
// propagator from the otel globals (tracing/options.go defaultConfig), so
// Setup must run before tracing.NewServerSuite / NewClientSuite.
package obs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/contrib/propagators/ot"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// SpanRecord is the JSON line written for one finished span. IDs are lower
// case hex (32 digits for trace ids, 16 for span ids); parent_span_id is ""
// for a root span.
type SpanRecord struct {
	TraceID      string            `json:"trace_id"`
	SpanID       string            `json:"span_id"`
	ParentSpanID string            `json:"parent_span_id"`
	ParentRemote bool              `json:"parent_remote"`
	Name         string            `json:"name"`
	Kind         string            `json:"kind"`
	Status       string            `json:"status"`
	Attributes   map[string]string `json:"attributes"`
}

// jsonExporter writes one JSON line per span. It is used with WithSyncer, so
// a span is written when it ends.
type jsonExporter struct {
	mu sync.Mutex
	w  io.Writer
}

func (e *jsonExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range spans {
		rec := SpanRecord{
			TraceID:      s.SpanContext().TraceID().String(),
			SpanID:       s.SpanContext().SpanID().String(),
			ParentRemote: s.Parent().IsRemote(),
			Name:         s.Name(),
			Kind:         s.SpanKind().String(),
			Status:       s.Status().Code.String(),
			Attributes:   map[string]string{},
		}
		if s.Parent().IsValid() {
			rec.ParentSpanID = s.Parent().SpanID().String()
		}
		for _, kv := range s.Attributes() {
			rec.Attributes[string(kv.Key)] = kv.Value.Emit()
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		// One write per line, so concurrent writers never interleave a line.
		if _, err := e.w.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

func (e *jsonExporter) Shutdown(context.Context) error { return nil }

// Setup installs the global tracer provider (always sampling, spans written
// to path, or to stderr when path is "") and the global propagator. The
// returned function flushes and closes; call it before exiting.
func Setup(serviceName, path string) (func(), error) {
	var w io.Writer = os.Stderr
	var f *os.File
	if path != "" {
		var err error
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("otel spans file: %w", err)
		}
		w = f
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSyncer(&jsonExporter{w: w}),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", serviceName))),
	)
	otel.SetTracerProvider(tp)
	// The default of obs-opentelemetry's provider.NewOpenTelemetryProvider
	// (provider/options.go defaultConfig), so the headers on the wire are the
	// ones a stock obs-opentelemetry service sends.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		b3.New(), ot.OT{}, propagation.Baggage{}, propagation.TraceContext{},
	))
	return func() {
		_ = tp.Shutdown(context.Background())
		if f != nil {
			_ = f.Close()
		}
	}, nil
}
