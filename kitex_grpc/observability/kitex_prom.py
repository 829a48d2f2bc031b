"""The series of kitex-contrib/monitor-prometheus, so Kitex dashboards and alerts work unchanged.

Facts from ``monitor-prometheus`` ``tracer.go`` / ``options.go`` / ``metrics.go`` (KITEX-WIRE-2 §16.1):

============================  =========  ============================================================
series                        type       one sample per
============================  =========  ============================================================
``kitex_client_throughput``   counter    finished call, on the client
``kitex_client_latency_us``   histogram  finished call, on the client: microseconds start to finish
``kitex_server_throughput``   counter    handled call, on the server
``kitex_server_latency_us``   histogram  handled call, on the server
============================  =========  ============================================================

Labels, all five on every sample:

- ``caller``: the calling service's name (``ri.caller.service_name``): on a client its own
  ``with_client_basic_info`` name; on a server the name the transport carried (TTHeader int key 3,
  gRPC ``source-service``), ``unknown`` when none came.
- ``callee``: on a client the destination service; on a server its own configured name
  (``with_server_basic_info``), as Kitex's ``To().ServiceName()`` is ``WithServerBasicInfo``'s: a
  server without one reports ``unknown`` (through ``with_suite``; a bare ``with_tracer`` of
  :attr:`KitexPrometheus.server_tracer` cannot see the options and falls back to ``ri.callee``).
  ``method``: the method. An empty name is ``unknown``.
- ``status``: ``error`` when the call ended with an error, else ``succeed``. A
  :class:`~kitex_grpc.errors.BizStatusError` is ``succeed`` on both sides, as in Kitex (the server
  handler returns nil; the client reports no RPC error).
- ``retry``: on a client the retry index of the attempt that ended the call (``0`` for the first
  try, ``1`` after one retry; Kitex's ``retry`` tag); on a server always ``0``.

Latency is the call's duration truncated to whole microseconds (Go's ``Duration.Microseconds()``),
in buckets 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000 µs and ``+Inf``
(``defaultBuckets``; change them with ``buckets=``, as ``WithHistogramBuckets``). As in Kitex a client
call is one sample however many attempts it took, and a stream is one sample when it ends.

Use it as a suite on a client and a server (``with_suite(kp)``) or give its tracers to
``with_tracer``. With ``address`` the server also serves ``GET <path>`` (default ``/metrics``) there;
the default address is loopback, see :mod:`.http_endpoint` for the risk of any other. Beside the
OpenTelemetry series it appears on the OpenTelemetry page with
``OpenTelemetrySuite(metrics_endpoint=..., kitex_prometheus=kp)``.

The client connection-pool series are documented in :mod:`.pool_stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kitex_grpc.errors import BizStatusError
from kitex_grpc.observability import pool_stats
from kitex_grpc.observability.http_endpoint import HTTPEndpoint, Reply
from kitex_grpc.observability.lifecycle import ServerHook
from kitex_grpc.observability.prom_text import Counter, Histogram, Registry
from kitex_grpc.observability.suite import Observers

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

__all__ = ["CONTENT_TYPE", "DEFAULT_BUCKETS", "LABELS", "KitexPrometheus", "KitexPrometheusTracer"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# monitor-prometheus options.go defaultBuckets (microseconds).
DEFAULT_BUCKETS: tuple[float, ...] = (5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000)
LABELS = ("caller", "callee", "method", "status", "retry")
_UNKNOWN = "unknown"
_HELP = {
    "client_throughput": "Total number of RPCs completed by the client, regardless of success or failure.",
    "client_latency_us": "Latency (microseconds) of the RPC until it is finished.",
    "server_throughput": "Total number of RPCs completed by the server, regardless of success or failure.",
    "server_latency_us": (
        "Latency (microseconds) of RPC that had been application-level handled by the server."
    ),
}


class KitexPrometheusTracer:
    """Counts and times finished calls on one side into the Kitex series (``start`` does nothing)."""

    __slots__ = ("_latency", "_throughput", "callee", "side")

    def __init__(self, side: str, throughput: Counter, latency: Histogram) -> None:
        self.side = side
        self._throughput = throughput
        self._latency = latency
        # A server's configured name, set by the suite's hook at start ("" when none: unknown).
        self.callee: str | None = None

    def start(self, ri: RPCInfo) -> None:
        return None

    def finish(self, ri: RPCInfo) -> None:
        stats = ri.stats
        error = stats.error
        callee = self.callee if self.callee is not None else ri.callee.service_name
        labels = (
            ri.caller.service_name or _UNKNOWN,
            callee or _UNKNOWN,
            ri.callee.method or ri.method.name or _UNKNOWN,
            "error" if error is not None and not isinstance(error, BizStatusError) else "succeed",
            str(ri.attempt - 1) if self.side == "client" else "0",
        )
        self._throughput.inc(labels)
        # Whole microseconds, truncated as Go's Duration.Microseconds().
        self._latency.observe(labels, float(int((stats.duration or 0.0) * 1_000_000)))

    def __repr__(self) -> str:
        return f"KitexPrometheusTracer({self.side!r})"


class _ServerName(ServerHook):
    """Gives a server tracer the server's configured name (``with_server_basic_info``) at start."""

    def __init__(self, tracer: KitexPrometheusTracer) -> None:
        self.tracer = tracer

    async def prepare(self, server: Any) -> None:
        self.tracer.callee = server.options.service_name

    def __repr__(self) -> str:
        return "KitexPrometheus.server_name"


class KitexPrometheus:
    """The four monitor-prometheus series and the client pool series, in one registry.

    - ``address``: where a server using this suite serves ``GET path``; ``None`` (the default) serves
      nothing (render the page yourself with :meth:`render`, or put it on the OpenTelemetry page).
    - ``buckets``: the latency histogram's upper bounds in microseconds (``+Inf`` is implied).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        path: str = "/metrics",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        if not path.startswith("/"):
            raise ValueError(f"KitexPrometheus: path must start with '/', got {path!r}")
        self.registry = Registry()
        self.buckets = tuple(buckets)
        tracers: dict[str, KitexPrometheusTracer] = {}
        for side in ("client", "server"):
            throughput = Counter(f"kitex_{side}_throughput", _HELP[f"{side}_throughput"], LABELS)
            latency = Histogram(f"kitex_{side}_latency_us", _HELP[f"{side}_latency_us"], LABELS, self.buckets)
            self.registry.register(throughput)
            self.registry.register(latency)
            tracers[side] = KitexPrometheusTracer(side, throughput, latency)
        self.client_tracer = tracers["client"]
        self.server_tracer = tracers["server"]
        pool_stats.register_families(self.registry)
        self.endpoint: HTTPEndpoint | None = None
        if address is not None:
            self.endpoint = HTTPEndpoint(
                address, {path: self.reply}, what="metrics endpoint", metrics_path=path
            )

    def render(self) -> str:
        """The text exposition of every series with samples."""
        return self.registry.render()

    def reply(self) -> Reply:
        return 200, CONTENT_TYPE, self.render().encode()

    def client_observers(self) -> Observers:
        """What ``client.with_suite(self)`` adds: the client tracer."""
        return Observers(tracers=(self.client_tracer,))

    def server_observers(self) -> Observers:
        """What ``server.with_suite(self)`` adds: a tracer, the hook naming it, the endpoint if any."""
        # One tracer per server (same series), told the server's configured name at start.
        tracer = KitexPrometheusTracer("server", self.server_tracer._throughput, self.server_tracer._latency)
        return Observers(
            tracers=(tracer,), lifecycle_hooks=(_ServerName(tracer),), metrics_endpoint=self.endpoint
        )

    def __repr__(self) -> str:
        where = f", {self.endpoint.requested!r}" if self.endpoint is not None else ""
        return f"KitexPrometheus(buckets={list(self.buckets)!r}{where})"
