"""OpenTelemetry metrics for calls, as a tracer (needs the ``otel`` extra).

One :class:`OTelMetrics` per side records, on the meter ``kitex_grpc``:

==================================  =============  ===============================================
instrument                          kind           what
==================================  =============  ===============================================
``rpc.{side}.duration``             histogram, ms  call latency (OpenTelemetry RPC metric name)
``rpc.{side}.requests_per_rpc``     histogram      messages from client to server per call
``rpc.{side}.responses_per_rpc``    histogram      messages from server to client per call
``kitex.{side}.calls``              counter        finished calls, by ``rpc.grpc.status_code``
``kitex.{side}.errors``             counter        failed calls, by ``rpc.grpc.status_code``
``kitex.{side}.in_flight``          up-down        calls started and not yet finished
``kitex.{side}.rejections``         counter        governance rejections, by ``kind``
``kitex.client.connection_pool.size``  gauge       pool sizes reported through
                                                   :func:`kitex_grpc.observability.metrics.register_pool_size`
==================================  =============  ===============================================

Attributes: ``rpc.system``, ``rpc.service``, ``rpc.method``, and on finished calls
``rpc.grpc.status_code`` (the gRPC status number, also for TTHeader calls).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from kitex_grpc._version import __version__
from kitex_grpc.observability import metrics as api
from kitex_grpc.observability.stats import rpc_system, status_of

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from kitex_grpc.rpcinfo import RPCInfo

__all__ = ["OTelMetrics"]


class OTelMetrics:
    """A tracer that records call metrics; also the rejection recorder of its client or server."""

    def __init__(
        self, meter_provider: MeterProvider | None = None, *, side: str, default_recorder: bool = True
    ) -> None:
        if side not in ("client", "server"):
            raise ValueError(f"OTelMetrics: side must be 'client' or 'server', got {side!r}")
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter("kitex_grpc", __version__)
        self.side = side
        self._duration = meter.create_histogram(
            f"rpc.{side}.duration",
            unit="ms",
            description=f"Duration of {'outbound' if side == 'client' else 'inbound'} RPCs",
        )
        self._requests = meter.create_histogram(
            f"rpc.{side}.requests_per_rpc", unit="{count}", description="Request messages per RPC"
        )
        self._responses = meter.create_histogram(
            f"rpc.{side}.responses_per_rpc", unit="{count}", description="Response messages per RPC"
        )
        self._calls = meter.create_counter(f"kitex.{side}.calls", unit="{call}", description="Finished RPCs")
        self._errors = meter.create_counter(f"kitex.{side}.errors", unit="{call}", description="Failed RPCs")
        self._in_flight = meter.create_up_down_counter(
            f"kitex.{side}.in_flight", unit="{call}", description="RPCs in progress"
        )
        self._rejections = meter.create_counter(
            f"kitex.{side}.rejections", unit="{call}", description="RPCs refused by a limiter or breaker"
        )
        if side == "client":
            meter.create_observable_gauge(
                "kitex.client.connection_pool.size",
                callbacks=[_observe_pools],
                unit="{connection}",
                description="Connections per pool, as reported by transports",
            )
        if default_recorder:
            api.set_default_recorder(self)

    @staticmethod
    def _attributes(ri: RPCInfo) -> dict[str, Any]:
        return {
            "rpc.system": rpc_system(ri),
            "rpc.service": ri.service.full_name,
            "rpc.method": ri.method.name,
        }

    def start(self, ri: RPCInfo) -> None:
        ri.extra[api.RECORDER_KEY] = self
        self._in_flight.add(1, self._attributes(ri))

    def finish(self, ri: RPCInfo) -> None:
        attrs = self._attributes(ri)
        self._in_flight.add(-1, attrs)
        stats = ri.stats
        status = status_of(stats.error, ri)
        attrs["rpc.grpc.status_code"] = int(status)
        self._duration.record((stats.duration or 0.0) * 1000.0, attrs)
        self._calls.add(1, attrs)
        if status != 0:
            self._errors.add(1, attrs)
        if ri.method.mode.is_streaming:
            client_sent, server_sent = (
                (stats.send_messages, stats.recv_messages)
                if self.side == "client"
                else (stats.recv_messages, stats.send_messages)
            )
        else:
            client_sent, server_sent = 1, (1 if status == 0 and not ri.method.oneway else 0)
        self._requests.record(client_sent, attrs)
        self._responses.record(server_sent, attrs)

    def record_rejection(self, kind: str, ri: RPCInfo | None) -> None:
        attrs: dict[str, Any] = {"kind": kind}
        if ri is not None:
            attrs.update(self._attributes(ri))
        self._rejections.add(1, attrs)

    def __repr__(self) -> str:
        return f"OTelMetrics(side={self.side!r})"


def _observe_pools(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(size, attrs) for attrs, size in api.pool_sizes()]
