"""Observability: tracers, metrics hooks, logging, diagnostics, and server lifecycle hooks.

Everything here works without OpenTelemetry installed; the OpenTelemetry suite lives in
:mod:`kitex_grpc.observability.otel` (and ``otel_metrics`` / ``otel_prometheus``) and needs the
``otel`` extra.

- :class:`Tracer` (``start(ri)`` / ``finish(ri)``), :data:`NOOP_TRACER`, :class:`CompositeTracer`.
- :func:`record_rejection` and :func:`register_pool_size`: the metrics calls governance and
  transports make; no-ops until metrics are configured.
- :class:`AccessLogTracer`, :class:`Logger`, :class:`StdlibLogger`: structured logging; no line per
  call unless ``with_access_log`` is given.
- :func:`describe_client`, :func:`describe_server`: the effective configuration as text.
- :class:`ServerHook`: prepare / serving / draining / stopped.

Kitex's monitor-prometheus series (``kitex_client_throughput``, ...) and the client pool series are
in :mod:`kitex_grpc.observability.kitex_prom` (no extra dependency); the HTTP server of metrics pages
and probes, with the risk of binding beyond loopback, in :mod:`kitex_grpc.observability.http_endpoint`.
"""

from __future__ import annotations

from kitex_grpc.observability.diagnostics import describe_client, describe_options, describe_server
from kitex_grpc.observability.lifecycle import ServerHook
from kitex_grpc.observability.logging import AccessLogTracer, Logger, StdlibLogger, call_fields
from kitex_grpc.observability.metrics import (
    MetricsRecorder,
    record_rejection,
    register_pool_size,
    set_default_recorder,
)
from kitex_grpc.observability.tracer import (
    NOOP_TRACER,
    CompositeTracer,
    MessageObserver,
    NoopTracer,
    Tracer,
    compose,
    message_event_middlewares,
)

__all__ = [
    "NOOP_TRACER",
    "AccessLogTracer",
    "CompositeTracer",
    "Logger",
    "MessageObserver",
    "MetricsRecorder",
    "NoopTracer",
    "ServerHook",
    "StdlibLogger",
    "Tracer",
    "call_fields",
    "compose",
    "describe_client",
    "describe_options",
    "describe_server",
    "message_event_middlewares",
    "record_rejection",
    "register_pool_size",
    "set_default_recorder",
]
