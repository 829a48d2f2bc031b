"""An OpenTelemetry SDK set up per test: in-memory spans and metrics, never the global providers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kitex_grpc.observability.otel import OpenTelemetrySuite


class _Notify(SpanProcessor):
    """Sets an event whenever a span ends (spans end on the event loop's thread)."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.set()


class OTel:
    def __init__(self, **suite_kwargs: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self._notify = _Notify()
        self.tracer_provider.add_span_processor(self._notify)
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.suite = OpenTelemetrySuite(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            metric_reader=self.reader,
            **suite_kwargs,
        )

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    async def wait_spans(self, count: int, seconds: float = 5.0) -> tuple[ReadableSpan, ...]:
        """The finished spans once there are ``count`` (server spans may end just after the reply)."""
        async with asyncio.timeout(seconds):
            while len(self.spans()) < count:
                self._notify.ended.clear()
                await self._notify.ended.wait()
        return self.spans()

    def metrics(self) -> dict[str, list[Any]]:
        """Data points by metric name."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def traceparent(span: ReadableSpan) -> str:
    """The W3C traceparent header that names ``span`` as the parent, as kitex_grpc sends it (trace
    flags reduced to the sampled bit, which otel-go accepts)."""
    ctx = span.context
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags) & 0x01:02x}"
