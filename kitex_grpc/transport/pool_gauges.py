"""Client connection-pool bookkeeping: what the client transports report, in one place.

The transports report here, process-wide, and pay nothing per call for the gauges:

- sizes: a transport registers a callback (:func:`register_pool_size`) that yields
  ``({"address": ..., "transport": ...}, connections)`` per address; :func:`size_rows` builds them.
  Read at collection time by :func:`pool_sizes` (the ``kitex.client.connection_pool.size`` gauge of
  :mod:`kitex_grpc.observability.metrics`).
- states and events: :func:`register_states` (connections ``active`` / ``idle`` per address) and
  :func:`count` (a :data:`DIAL`, :data:`REUSE` or :data:`DIAL_FAILURE`), rendered by
  :mod:`kitex_grpc.observability.pool_stats` as the ``kitex_client_conn_pool_*`` series.

This is the transport layer's side of the pool series: observability reads it, the transports never
import observability (ARCHITECTURE.md, "Layers"). The counters keep one entry per address ever
dialled, at most :data:`MAX_ADDRESSES` per transport (later ones are counted under ``"other"``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TypeVar

__all__ = [
    "DIAL",
    "DIAL_FAILURE",
    "MAX_ADDRESSES",
    "REUSE",
    "PoolSizeCallback",
    "StatesCallback",
    "count",
    "counts",
    "pool_sizes",
    "register_pool_size",
    "register_sizes_weakly",
    "register_states",
    "size_rows",
    "states",
]

# A pool-size callback yields (attributes, size) pairs, e.g. ({"address": "10.0.0.1:8888",
# "transport": "ttheader"}, 3).
PoolSizeCallback = Callable[[], Iterable[tuple[Mapping[str, str], int]]]
# A states callback yields (transport, address, active, idle).
StatesCallback = Callable[[], Iterable[tuple[str, str, int, int]]]

DIAL, REUSE, DIAL_FAILURE = 0, 1, 2
MAX_ADDRESSES = 1000

_size_callbacks: dict[int, PoolSizeCallback] = {}
_state_callbacks: dict[int, StatesCallback] = {}
_counts: dict[tuple[str, str], list[int]] = {}
_addresses: dict[str, int] = {}
_next_id = 0
_C = TypeVar("_C")


def _register(callbacks: dict[int, _C], callback: _C) -> Callable[[], None]:
    global _next_id
    _next_id += 1
    key = _next_id
    callbacks[key] = callback

    def unregister() -> None:
        callbacks.pop(key, None)

    return unregister


# -- sizes ------------------------------------------------------------------------------------------------


def register_pool_size(callback: PoolSizeCallback) -> Callable[[], None]:
    """Report connection pool sizes through ``callback`` at metric collection time.

    Returns a function that unregisters the callback.
    """
    return _register(_size_callbacks, callback)


def pool_sizes() -> list[tuple[dict[str, str], int]]:
    """Every registered pool's current sizes (called by the metrics exporter)."""
    out: list[tuple[dict[str, str], int]] = []
    for callback in list(_size_callbacks.values()):
        out.extend((dict(attrs), int(size)) for attrs, size in callback())
    return out


def size_rows(transport: str, addresses: Iterable[str]) -> list[tuple[Mapping[str, str], int]]:
    """``({"address": a, "transport": transport}, n)`` per address, ``n`` its occurrences in ``addresses``
    (one per open connection, or per channel)."""
    by_address: dict[str, int] = {}
    for address in addresses:  # not Counter(addresses): a mapping given would count its values
        by_address[address] = by_address.get(address, 0) + 1
    return [({"address": address, "transport": transport}, n) for address, n in by_address.items()]


class SupportsPoolSizes(Protocol):
    def pool_sizes(self) -> Iterable[tuple[Mapping[str, str], int]]: ...


def _sizes_of(ref: weakref.ReferenceType[SupportsPoolSizes]) -> Iterable[tuple[Mapping[str, str], int]]:
    owner = ref()
    return owner.pool_sizes() if owner is not None else ()


def register_sizes_weakly(owner: SupportsPoolSizes) -> weakref.finalize[[], SupportsPoolSizes]:
    """Register ``owner.pool_sizes`` holding ``owner`` weakly; the callback is unregistered when the
    returned finalizer is called (on close) or when ``owner`` is collected, whichever comes first."""
    ref = weakref.ref(owner)
    return weakref.finalize(owner, register_pool_size(lambda: _sizes_of(ref)))


# -- states and events ------------------------------------------------------------------------------------


def register_states(callback: StatesCallback) -> Callable[[], None]:
    """Report connections by state through ``callback`` at scrape time; returns the unregister function."""
    return _register(_state_callbacks, callback)


def states() -> list[tuple[str, str, int, int]]:
    """Every registered pool's ``(transport, address, active, idle)``, summed per transport and address."""
    totals: dict[tuple[str, str], list[int]] = {}
    for callback in list(_state_callbacks.values()):
        for transport, address, active, idle in callback():
            entry = totals.setdefault((transport, address), [0, 0])
            entry[0] += active
            entry[1] += idle
    return [(t, a, active, idle) for (t, a), (active, idle) in totals.items()]


def count(transport: str, address: str, event: int) -> None:
    """Count one :data:`DIAL`, :data:`REUSE` or :data:`DIAL_FAILURE` of ``transport`` to ``address``."""
    key = (transport, address)
    entry = _counts.get(key)
    if entry is None:
        if _addresses.get(transport, 0) >= MAX_ADDRESSES:
            key = (transport, "other")
            entry = _counts.get(key)
        if entry is None:
            entry = _counts[key] = [0, 0, 0]
            _addresses[transport] = _addresses.get(transport, 0) + 1
    entry[event] += 1


def counts(event: int) -> list[tuple[tuple[str, str], int]]:
    """``((transport, address), n)`` for every address with ``n`` > 0 events of kind ``event``."""
    return [(key, entry[event]) for key, entry in list(_counts.items()) if entry[event]]
