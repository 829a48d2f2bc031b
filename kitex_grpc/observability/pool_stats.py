"""Client connection-pool series: connections by state, and counts of dials, reuses and dial failures.

Transports report to :mod:`kitex_grpc.transport.pool_gauges` (process-wide, like
:func:`~kitex_grpc.observability.metrics.register_pool_size`; its names are re-exported here) and
:class:`~kitex_grpc.observability.kitex_prom.KitexPrometheus` renders them, named in the style of
the Kitex series (``kitex_client_*``) and of Prometheus (``_total`` on counters):

==============================================  =======  ===========================================
series                                          type     what
==============================================  =======  ===========================================
``kitex_client_conn_pool_connections``          gauge    open connections by ``state``: ``active``
                                                         (carrying a call) or ``idle``
``kitex_client_conn_pool_dials_total``          counter  connections dialled successfully
``kitex_client_conn_pool_reuses_total``         counter  calls that took an existing connection
``kitex_client_conn_pool_dial_failures_total``  counter  dials that failed (refused, timed out, TLS)
==============================================  =======  ===========================================

Labels: ``transport`` (``ttheader``, ``grpc_h2`` or ``grpc``) and ``address`` (``host:port``).

What each transport counts:

- ``ttheader``: a dial per new TCP connection (pooled or multiplexed); a reuse per call served by an
  idle pooled connection; ``active`` = open connections not in the idle pool.
- ``grpc_h2``: one multiplexed connection per address: a dial per connection (concurrent callers share
  one dial), a reuse per call on an already open connection; ``active`` = connections with a call in
  flight.
- ``grpc`` (grpcio): a dial per channel that became ready, a failure per channel that did not within
  the connect timeout, a reuse per call on a ready channel. grpcio hides its sockets, so ``grpc`` has
  no ``connections`` gauge.

The counters live as long as the process and keep one sample per address ever dialled (at most
:data:`MAX_ADDRESSES` addresses per transport; later ones are counted under ``address="other"``).
"""

from __future__ import annotations

from collections.abc import Callable

from kitex_grpc.observability.prom_text import Gauge, Registry

# The counters and the states registry live with the transports that report to them.
from kitex_grpc.transport.pool_gauges import (
    DIAL,
    DIAL_FAILURE,
    MAX_ADDRESSES,
    REUSE,
    StatesCallback,
    count,
    counts,
    register_states,
    states,
)

__all__ = [
    "DIAL",
    "DIAL_FAILURE",
    "MAX_ADDRESSES",
    "REUSE",
    "StatesCallback",
    "count",
    "register_families",
    "register_states",
    "states",
]


def _connection_samples() -> list[tuple[tuple[str, ...], float]]:
    out: list[tuple[tuple[str, ...], float]] = []
    for transport, address, active, idle in states():
        out.append(((transport, address, "active"), float(active)))
        out.append(((transport, address, "idle"), float(idle)))
    return out


def _event_samples(event: int) -> Callable[[], list[tuple[tuple[str, ...], float]]]:
    def collect() -> list[tuple[tuple[str, ...], float]]:
        return [(key, float(n)) for key, n in counts(event)]

    return collect


def register_families(registry: Registry) -> None:
    """Add the pool series to a :class:`~kitex_grpc.observability.prom_text.Registry`."""
    labels = ("transport", "address")
    registry.register(
        Gauge(
            "kitex_client_conn_pool_connections",
            "Open client connections by state (active: carrying a call; idle).",
            (*labels, "state"),
            _connection_samples,
        )
    )
    for event, name, text in (
        (DIAL, "dials", "Client connections dialled successfully."),
        (REUSE, "reuses", "Client calls that took an existing connection."),
        (DIAL_FAILURE, "dial_failures", "Client dials that failed."),
    ):
        registry.register(
            Gauge(f"kitex_client_conn_pool_{name}_total", text, labels, _event_samples(event), kind="counter")
        )
