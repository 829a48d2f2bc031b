"""The metrics API other parts of kitex-grpc call; a no-op until metrics are configured.

Call metrics (counts, durations, in-flight calls, stream message counts, errors by status) come from
a metrics tracer (:class:`kitex_grpc.observability.otel_metrics.OTelMetrics`, installed by the
OpenTelemetry suite). Two kinds of event happen where no tracer can see them, and have a function
here instead:

- **Rejections** by governance (limiters, circuit breakers, ACL): call
  ``record_rejection(kind, ri)``. It reports to the metrics of the client or server that owns ``ri``
  (a metrics tracer stores itself in ``ri.extra`` at start), or, for ``ri=None`` (a connection
  refused before any call exists), to the process default set by :func:`set_default_recorder`. With
  no metrics configured it returns at once.
- **Connection pool sizes**: a transport registers a callback with :func:`register_pool_size`; the
  metrics exporter calls it at collection time (an observable gauge), so the transport pays nothing
  per call. The returned function unregisters it (call it on close). The registry itself is
  :mod:`kitex_grpc.transport.pool_gauges` (transports do not import observability).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

# The pool-size registry lives with the transports that report to it; these names are its public face.
from kitex_grpc.transport.pool_gauges import PoolSizeCallback, pool_sizes, register_pool_size

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

__all__ = [
    "RECORDER_KEY",
    "REJECT_ACL",
    "REJECT_CIRCUIT_BREAKER",
    "REJECT_CONCURRENCY_LIMIT",
    "REJECT_CONNECTION_LIMIT",
    "REJECT_QPS_LIMIT",
    "MetricsRecorder",
    "PoolSizeCallback",
    "pool_sizes",
    "record_rejection",
    "register_pool_size",
    "set_default_recorder",
]

# Suggested ``kind`` values for record_rejection (free-form strings are accepted).
REJECT_CIRCUIT_BREAKER = "circuit_breaker"
REJECT_QPS_LIMIT = "qps_limit"
REJECT_CONCURRENCY_LIMIT = "concurrency_limit"
REJECT_CONNECTION_LIMIT = "connection_limit"
REJECT_ACL = "acl"

# The key under which a metrics tracer stores itself in ``RPCInfo.extra``.
RECORDER_KEY = "kitex_grpc.metrics"


class MetricsRecorder(Protocol):
    """What :func:`record_rejection` reports to."""

    def record_rejection(self, kind: str, ri: RPCInfo | None) -> None: ...


_default: MetricsRecorder | None = None


def record_rejection(kind: str, ri: RPCInfo | None = None) -> None:
    """Count a call (or connection) refused by governance; a no-op without configured metrics.

    ``kind`` names the mechanism, e.g. :data:`REJECT_CIRCUIT_BREAKER` or :data:`REJECT_QPS_LIMIT`.
    """
    recorder = ri.extra.get(RECORDER_KEY) if ri is not None and ri.extra else None
    if recorder is None:
        recorder = _default
        if recorder is None:
            return
    recorder.record_rejection(kind, ri)


def set_default_recorder(recorder: MetricsRecorder | None) -> MetricsRecorder | None:
    """Set where rejections without an RPCInfo go; returns the previous default."""
    global _default
    previous, _default = _default, recorder
    return previous
