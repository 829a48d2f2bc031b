"""OpenTelemetry tracing for kitex-grpc, and the suite that bundles tracing and metrics.

Needs the ``otel`` extra (``pip install 'kitex-grpc[otel]'``); nothing else in kitex-grpc imports
OpenTelemetry. Use it through the suite::

    from kitex_grpc.observability.otel import OpenTelemetrySuite
    suite = OpenTelemetrySuite()                      # global tracer/meter providers and propagator
    cli = echo_kitex.new_client("echo", client.with_suite(suite), ...)
    svr = echo_kitex.new_server(Echo(), server.with_suite(suite), ...)

**Spans** follow the OpenTelemetry RPC conventions: name ``<package>.<Service>/<Method>``; attributes
``rpc.system`` (``grpc`` over HTTP/2, ``apache_thrift`` for Thrift over TTHeader, ``kitex`` for Kitex
Protobuf), ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code`` (gRPC), ``server.address`` /
``server.port``, ``network.peer.address`` / ``network.peer.port``. Client spans are errors for any
non-OK status; server spans only for UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE
and DATA_LOSS. Streams carry one ``rpc.message`` event per message (``rpc.message.type`` SENT or
RECEIVED, ``rpc.message.id`` counting from 1 each way).

**Attempts.** As gRPC does (gRFC A45/A72), a client call is one CLIENT span and each attempt of a
unary call (the first try, retries, backup requests: ``ri.attempt``) is a child span
``Attempt.<Service>/<Method>`` with ``kitex.attempt``; the server span of an attempt is that
attempt's child. All of them share one trace.

**Propagation** is W3C trace context (``traceparent``, ``tracestate``; plus ``baggage`` with the
default global propagator), written where kitex-contrib/obs-opentelemetry (Go) puts and looks for it
(``tracing/middleware.go``, ``tracing/propagator.go``): as *transient metainfo* values named by the
propagator's keys, i.e. ``RPC_TRANSIT_traceparent`` in TTHeader string info and the header
``rpc-transit-traceparent`` over gRPC; and, over gRPC, also as plain ``traceparent`` / ``tracestate``
metadata (what other gRPC OpenTelemetry libraries use, and obs-opentelemetry with
``WithEnableMetadata``). A server reads plain metadata first, then the transient metainfo, with
HTTP-style key normalisation (``TRACEPARENT`` arriving over gRPC reads as ``traceparent``). Transports
need nothing beyond carrying metainfo: TTHeader already writes ``metainfo.to_ttheader_strinfo()``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status
from opentelemetry.trace import StatusCode as SpanStatus

from kitex_grpc import metainfo
from kitex_grpc._version import __version__
from kitex_grpc.observability.stats import rpc_system, split_host_port, status_of
from kitex_grpc.observability.suite import Observers
from kitex_grpc.observability.tracer import message_event_middlewares
from kitex_grpc.status import StatusCode
from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from kitex_grpc.endpoint import Endpoint, Middleware
    from kitex_grpc.observability.kitex_prom import KitexPrometheus
    from kitex_grpc.observability.lifecycle import ServerHook
    from kitex_grpc.observability.tracer import Tracer
    from kitex_grpc.rpcinfo import RPCInfo
    from kitex_grpc.streaming import RecvMiddleware, SendMiddleware

__all__ = ["INSTRUMENTATION_NAME", "ClientTracer", "OpenTelemetrySuite", "ServerTracer"]

INSTRUMENTATION_NAME = "kitex_grpc"
logger = logging.getLogger("kitex_grpc.observability")

_SPAN = "otel.span"
_TOKEN = "otel.token"
_GRPC = (TransportProtocol.GRPC, TransportProtocol.GRPC_H2)
# gRPC statuses that make a *server* span an error (OpenTelemetry gRPC conventions).
_SERVER_ERRORS = frozenset(
    {
        StatusCode.UNKNOWN,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.UNIMPLEMENTED,
        StatusCode.INTERNAL,
        StatusCode.UNAVAILABLE,
        StatusCode.DATA_LOSS,
    }
)


def span_name(ri: RPCInfo) -> str:
    """``<package>.<Service>/<Method>`` (obs-opentelemetry ``spanNaming``; OTel RPC span name)."""
    return f"{ri.service.full_name}/{ri.method.name}"


def _base_attributes(ri: RPCInfo) -> dict[str, Any]:
    return {
        "rpc.system": rpc_system(ri),
        "rpc.service": ri.service.full_name,
        "rpc.method": ri.method.name,
    }


def _address_attributes(prefix: str, address: str) -> dict[str, Any]:
    if not address:
        return {}
    host, port = split_host_port(address)
    attrs: dict[str, Any] = {f"{prefix}.address": host}
    if port is not None:
        attrs[f"{prefix}.port"] = port
    return attrs


class _SpanTracer:
    """What the client and server tracers share: the OTel tracer, the propagator, span endings."""

    kind: SpanKind

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
        self._propagator = propagator

    @property
    def propagator(self) -> TextMapPropagator:
        # Resolved per use, so a propagator set globally after the suite was built still applies.
        return self._propagator or propagate.get_global_textmap()

    def _end(self, span: trace.Span, ri: RPCInfo, error: BaseException | None, server: bool) -> None:
        status = status_of(error, ri)
        if rpc_system(ri) == "grpc":
            span.set_attribute("rpc.grpc.status_code", int(status))
        if status is not StatusCode.OK and (not server or status in _SERVER_ERRORS):
            if error is not None:
                span.record_exception(error)
            span.set_status(Status(SpanStatus.ERROR, f"{status.name}: {error}" if error else status.name))
        span.end()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def on_message(self, ri: RPCInfo, sent: bool, message: Any) -> None:
        """One ``rpc.message`` event on the call's span per stream message."""
        span = ri.extra.get(_SPAN)
        if span is None:
            return
        stats = ri.stats
        attrs: dict[str, Any] = {
            "rpc.message.type": "SENT" if sent else "RECEIVED",
            "rpc.message.id": stats.send_messages if sent else stats.recv_messages,
        }
        size = getattr(message, "ByteSize", None)
        if callable(size):
            attrs["rpc.message.uncompressed_size"] = size()
        span.add_event("rpc.message", attrs)


class ClientTracer(_SpanTracer):
    """Client spans: one CLIENT span per call, one child span per unary attempt (see module doc)."""

    kind = SpanKind.CLIENT

    def start(self, ri: RPCInfo) -> None:
        ri.extra[_SPAN] = self._tracer.start_span(
            span_name(ri), otel_context.get_current(), SpanKind.CLIENT, _base_attributes(ri)
        )

    def finish(self, ri: RPCInfo) -> None:
        span: trace.Span | None = ri.extra.pop(_SPAN, None)
        if span is None:
            return
        span.set_attributes(_address_attributes("server", ri.callee.address))
        self._end(span, ri, ri.stats.error, server=False)

    def attempt_middleware(self, next_endpoint: Endpoint) -> Endpoint:
        """An instance middleware: starts the attempt span and injects its trace context."""

        async def otel_attempt(ri: RPCInfo, request: Any) -> Any:
            call_span: trace.Span | None = ri.extra.get(_SPAN)
            if call_span is None:
                return await next_endpoint(ri, request)
            call_ctx = trace.set_span_in_context(call_span)
            if ri.method.mode.is_streaming:  # streams are not retried: the call span is the attempt
                with self._inject(ri, call_ctx):
                    return await next_endpoint(ri, request)
            attrs = {
                **_base_attributes(ri),
                **_address_attributes("server", ri.callee.address),
                "kitex.attempt": ri.attempt,
            }
            attempt = self._tracer.start_span(f"Attempt.{span_name(ri)}", call_ctx, SpanKind.INTERNAL, attrs)
            try:
                with self._inject(ri, trace.set_span_in_context(attempt, call_ctx)):
                    reply = await next_endpoint(ri, request)
            except BaseException as exc:
                self._end(attempt, ri, exc, server=False)
                raise
            self._end(attempt, ri, None, server=False)
            return reply

        return otel_attempt

    @contextlib.contextmanager
    def _inject(self, ri: RPCInfo, ctx: otel_context.Context) -> Any:
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=ctx)
        if not carrier:
            yield
            return
        _sampled_flag_only(carrier)
        if ri.config.transport_protocol in _GRPC:
            keys = set(carrier)
            ri.metadata = [(k, v) for k, v in ri.metadata if k not in keys] + list(carrier.items())
        with contextlib.ExitStack() as stack:
            for key, value in carrier.items():
                # Hide what arrived from upstream (over gRPC it reads back as TRACEPARENT), then set
                # this hop's value as a transient metainfo value, as obs-opentelemetry does.
                stack.enter_context(metainfo.del_value(metainfo.http_to_cgi(key)))
                stack.enter_context(metainfo.del_value(key))
                stack.enter_context(metainfo.with_value(key, value))
            yield


def _sampled_flag_only(carrier: dict[str, str]) -> None:
    """Keep only the sampled bit of a W3C ``traceparent``'s trace flags.

    The Python SDK marks new trace ids random (W3C Trace Context Level 2, flag 0x02), but otel-go up
    to v1.41 (``propagation/trace_context.go``; v1.37 is what kitex-contrib/obs-opentelemetry v0.3.0
    uses) rejects a version-00 traceparent with flags above 2 and starts a new trace, so a Python hop
    would cut the trace. otel-go's own injector sends only the sampled bit; so do we.
    """
    value = carrier.get("traceparent")
    if value is not None and value.startswith("00-") and len(value) == 55:
        flags = int(value[53:], 16) & 0x01
        carrier["traceparent"] = f"{value[:53]}{flags:02x}"


class ServerTracer(_SpanTracer):
    """Server spans: a SERVER span per call, parented on the caller's propagated context and made
    current for the handler, so its outgoing calls join the trace."""

    kind = SpanKind.SERVER

    def start(self, ri: RPCInfo) -> None:
        parent = self.propagator.extract(_incoming_carrier(ri), context=otel_context.Context())
        attrs = {
            **_base_attributes(ri),
            **_address_attributes("server", ri.callee.address),
            **_address_attributes("network.peer", ri.caller.address),
        }
        span = self._tracer.start_span(span_name(ri), parent, SpanKind.SERVER, attrs)
        ri.extra[_SPAN] = span
        ri.extra[_TOKEN] = otel_context.attach(trace.set_span_in_context(span, parent))

    def finish(self, ri: RPCInfo) -> None:
        span: trace.Span | None = ri.extra.pop(_SPAN, None)
        token = ri.extra.pop(_TOKEN, None)
        if token is not None:
            with contextlib.suppress(ValueError):  # finished on another context: nothing to restore
                otel_context.detach(token)
        if span is not None:
            self._end(span, ri, ri.stats.error, server=True)


def _incoming_carrier(ri: RPCInfo) -> dict[str, str]:
    """Trace context as received: plain gRPC metadata first, then transient metainfo."""
    carrier: dict[str, str] = {}
    for key, value in metainfo.get_all_values().items():
        carrier[metainfo.cgi_to_http(key)] = value
    for key, raw in ri.metadata:
        if isinstance(raw, str) and key in ("traceparent", "tracestate", "baggage"):
            carrier[key] = raw
    return carrier


class OpenTelemetrySuite:
    """Tracing and metrics for clients and servers, as one option: ``with_suite(OpenTelemetrySuite())``.

    - ``tracer_provider`` / ``meter_provider`` / ``propagator``: default to the global ones.
    - ``tracing`` / ``metrics``: turn either half off. ``message_events``: per-message stream events.
    - ``metrics_endpoint``: ``"127.0.0.1:9464"`` serves Prometheus text at ``/metrics`` while a server
      runs (any ``host:port`` or ``:port``; see the risk in :mod:`.http_endpoint`). It reads
      ``metric_reader`` (an ``InMemoryMetricReader`` attached to ``meter_provider``); without a
      ``meter_provider`` the suite makes both.
    - ``kitex_prometheus``: a :class:`~kitex_grpc.observability.kitex_prom.KitexPrometheus` whose
      tracers the suite adds and whose series (``kitex_client_throughput``, ...) appear on the
      ``metrics_endpoint`` page beside the OpenTelemetry ones.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        propagator: TextMapPropagator | None = None,
        tracing: bool = True,
        metrics: bool = True,
        message_events: bool = True,
        metrics_endpoint: str | None = None,
        metric_reader: InMemoryMetricReader | None = None,
        kitex_prometheus: KitexPrometheus | None = None,
    ) -> None:
        if (
            metrics_endpoint is not None
            and kitex_prometheus is not None
            and kitex_prometheus.endpoint is not None
        ):
            # one page per server: with_metrics_endpoint takes one endpoint
            raise ValueError(
                "OpenTelemetrySuite: metrics_endpoint and kitex_prometheus's own address both serve a "
                "metrics page; give one (the metrics_endpoint page carries the Kitex series too)"
            )
        if metrics_endpoint is not None and metric_reader is None:
            if meter_provider is not None:
                raise ValueError(
                    "OpenTelemetrySuite: metrics_endpoint with meter_provider needs metric_reader"
                )
            from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader as Reader

            metric_reader = Reader()
            meter_provider = SDKMeterProvider(metric_readers=[metric_reader])
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.propagator = propagator
        self.tracing = tracing
        self.metrics = metrics
        self.message_events = message_events
        self.metric_reader = metric_reader
        self.kitex_prometheus = kitex_prometheus
        self.metrics_endpoint: Any = None
        if metrics_endpoint is not None:
            from kitex_grpc.observability.otel_prometheus import PrometheusEndpoint

            assert metric_reader is not None
            extra = [kitex_prometheus.render] if kitex_prometheus is not None else []
            self.metrics_endpoint = PrometheusEndpoint(metric_reader, metrics_endpoint, extra)

    def client_observers(self) -> Observers:
        """What ``client.with_suite(self)`` adds: tracers, the attempt middleware, message events."""
        tracers: list[Tracer] = []
        instance: tuple[Middleware, ...] = ()
        send: tuple[SendMiddleware, ...] = ()
        recv: tuple[RecvMiddleware, ...] = ()
        if self.tracing:
            tracer = ClientTracer(self.tracer_provider, self.propagator)
            tracers.append(tracer)
            instance = (tracer.attempt_middleware,)
            if self.message_events:
                send_one, recv_one = message_event_middlewares(tracer)
                send, recv = (send_one,), (recv_one,)
        if self.metrics:
            from kitex_grpc.observability.otel_metrics import OTelMetrics

            tracers.append(OTelMetrics(self.meter_provider, side="client"))
        if self.kitex_prometheus is not None:
            tracers.extend(self.kitex_prometheus.client_observers().tracers)
        return Observers(
            tracers=tuple(tracers),
            instance_middlewares=instance,
            stream_send_middlewares=send,
            stream_recv_middlewares=recv,
        )

    def server_observers(self) -> Observers:
        """What ``server.with_suite(self)`` adds: tracers, message events, the metrics page if any."""
        tracers: list[Tracer] = []
        hooks: tuple[ServerHook, ...] = ()
        send: tuple[SendMiddleware, ...] = ()
        recv: tuple[RecvMiddleware, ...] = ()
        if self.tracing:
            tracer = ServerTracer(self.tracer_provider, self.propagator)
            tracers.append(tracer)
            if self.message_events:
                send_one, recv_one = message_event_middlewares(tracer)
                send, recv = (send_one,), (recv_one,)
        if self.metrics:
            from kitex_grpc.observability.otel_metrics import OTelMetrics

            tracers.append(OTelMetrics(self.meter_provider, side="server"))
        endpoint: ServerHook | None = None
        if self.kitex_prometheus is not None:
            prom = self.kitex_prometheus.server_observers()
            tracers.extend(prom.tracers)
            hooks = prom.lifecycle_hooks
            endpoint = prom.metrics_endpoint
        if self.metrics_endpoint is not None:  # never both: see __init__
            endpoint = self.metrics_endpoint
        return Observers(
            tracers=tuple(tracers),
            stream_send_middlewares=send,
            stream_recv_middlewares=recv,
            lifecycle_hooks=hooks,
            metrics_endpoint=endpoint,
        )

    def __repr__(self) -> str:
        parts = [name for name in ("tracing", "metrics", "message_events") if getattr(self, name)]
        if self.metrics_endpoint is not None:
            parts.append(f"endpoint={self.metrics_endpoint.requested!r}")
        return f"OpenTelemetrySuite({', '.join(parts)})"
