"""Server limits (Kitex ``pkg/limiter``, ``pkg/limit``): max connections, max QPS, max concurrency.

The counting cores are sans-IO and take the time from an injected clock:

- :class:`TokenBucket`: Kitex's QPS limiter refills every 100 ms; capacity ``max_qps``, starts full,
  gains ``max_qps / 10`` tokens (at least 1) per 100 ms interval.
- :class:`ConcurrencyLimiter`: calls in flight.
- :class:`ConnectionLimiter`: open connections, by connection id.

:class:`ServerLimiter` applies them as the server's ``limit`` middleware, at the front of the chain.
A rejected call raises ConnOverLimitError, QPSOverLimitError or ConcurrencyOverLimitError
(OverLimitError, gRPC RESOURCE_EXHAUSTED) and is counted in :class:`LimitStats`.

Connections, per transport: a server transport with a ``limit_connections(limiter)`` method counts
its own connections at accept time (the h2 and TTHeader transports own their sockets). grpcio does not
expose connection accept/close to Python, so there the middleware counts peers (client ``host:port``)
that have a call in flight: an idle connection is not counted, and the call that would make one peer
too many is rejected with RESOURCE_EXHAUSTED. (Kitex itself has no connection or QPS limiter for gRPC:
"TODO: gRPC limiter".)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kitex_grpc.errors import ConcurrencyOverLimitError, ConnOverLimitError, QPSOverLimitError
from kitex_grpc.governance.circuitbreak import Clock
from kitex_grpc.observability.metrics import (
    REJECT_CONCURRENCY_LIMIT,
    REJECT_CONNECTION_LIMIT,
    REJECT_QPS_LIMIT,
    record_rejection,
)

if TYPE_CHECKING:
    from kitex_grpc.endpoint import Endpoint
    from kitex_grpc.rpcinfo import RPCInfo

QPS_INTERVAL = 0.1


_METRIC_KIND = {
    "connection": REJECT_CONNECTION_LIMIT,
    "qps": REJECT_QPS_LIMIT,
    "concurrency": REJECT_CONCURRENCY_LIMIT,
}


@dataclasses.dataclass(frozen=True, slots=True)
class LimitOption:
    """Kitex ``limit.Option``; 0 means unlimited."""

    max_connections: int = 0
    max_qps: int = 0
    max_concurrency: int = 0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_qps", "max_concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"limit: {name} must be an integer >= 0, got {value!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.max_connections or self.max_qps or self.max_concurrency)


class TokenBucket:
    """QPS limiter: capacity ``rate``, refilled by ``rate * interval`` (>= 1) per whole interval."""

    __slots__ = ("_clock", "_epoch", "capacity", "interval", "once", "tokens")

    def __init__(self, rate: int, clock: Clock = time.monotonic, interval: float = QPS_INTERVAL) -> None:
        if rate <= 0:
            raise ValueError("TokenBucket: rate must be > 0")
        self.capacity = rate
        self.interval = interval
        self.once = max(1, int(rate * interval))
        self.tokens = rate
        self._clock = clock
        self._epoch = int(clock() / interval)

    def acquire(self) -> bool:
        epoch = int(self._clock() / self.interval)
        if epoch > self._epoch:
            self.tokens = min(self.capacity, self.tokens + (epoch - self._epoch) * self.once)
            self._epoch = epoch
        if self.tokens <= 0:
            return False
        self.tokens -= 1
        return True


class ConcurrencyLimiter:
    __slots__ = ("limit", "running")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0

    def acquire(self) -> bool:
        if self.running >= self.limit:
            return False
        self.running += 1
        return True

    def release(self) -> None:
        self.running -= 1


class ConnectionLimiter:
    """Open connections by id; a connection counts from its first ``acquire`` to its last ``release``."""

    __slots__ = ("_refs", "limit", "on_reject", "rejected")

    def __init__(self, limit: int, on_reject: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.rejected = 0
        # Called on every rejection, whoever counts the connections (a middleware or a transport),
        # so the server's stats, reporter and metrics see them all in one place.
        self.on_reject = on_reject
        self._refs: dict[object, int] = {}

    @property
    def connections(self) -> int:
        return len(self._refs)

    def acquire(self, conn: object) -> bool:
        refs = self._refs.get(conn)
        if refs is None:
            if self.limit and len(self._refs) >= self.limit:  # 0: unlimited (a live limit not set yet)
                self.rejected += 1
                if self.on_reject is not None:
                    self.on_reject()
                return False
            refs = 0
        self._refs[conn] = refs + 1
        return True

    def release(self, conn: object) -> None:
        refs = self._refs.get(conn, 0) - 1
        if refs <= 0:
            self._refs.pop(conn, None)
        else:
            self._refs[conn] = refs


@dataclasses.dataclass
class LimitStats:
    """What the limiter let through and what it rejected, by reason."""

    accepted: int = 0
    conn_rejected: int = 0
    qps_rejected: int = 0
    concurrency_rejected: int = 0


LimitReporter = Callable[[str], None]
"""Kitex ``LimitReporter``: called with ``"connection"``, ``"qps"`` or ``"concurrency"`` on rejection."""


class ServerLimiter:
    """The server's ``limit`` middleware over a :class:`LimitOption`.

    :meth:`update` changes the limits of a running server: the QPS bucket and the concurrency limiter
    are replaced (a call releases the limiter it acquired), the connection limit is changed in place
    (transports hold the :class:`ConnectionLimiter`). Connections already open stay open. With
    ``live=True`` the connection limiter exists even while unlimited, so a later limit applies.
    """

    def __init__(
        self,
        option: LimitOption,
        *,
        clock: Clock = time.monotonic,
        reporter: LimitReporter | None = None,
        count_peers: bool = True,
        live: bool = False,
    ) -> None:
        self.option = option
        self.stats = LimitStats()
        self._reporter = reporter
        self._clock = clock
        self.qps = TokenBucket(option.max_qps, clock) if option.max_qps else None
        self.concurrency = ConcurrencyLimiter(option.max_concurrency) if option.max_concurrency else None
        self.connections = (
            ConnectionLimiter(option.max_connections, self._connection_rejected)
            if option.max_connections or live
            else None
        )
        # a transport that limits its own connections turns peer counting off
        self.count_peers = count_peers

    def update(self, option: LimitOption) -> None:
        """Apply new limits to calls (and connections) that start after this (0 = unlimited).

        A connection limit needs the limiter built with ``live=True`` or a connection limit at start.
        """
        if option.max_qps != self.option.max_qps:
            self.qps = TokenBucket(option.max_qps, self._clock) if option.max_qps else None
        if option.max_concurrency != self.option.max_concurrency:
            limit = option.max_concurrency
            self.concurrency = ConcurrencyLimiter(limit) if limit else None
        if self.connections is not None:
            self.connections.limit = option.max_connections
        elif option.max_connections:
            raise ValueError("ServerLimiter.update: this limiter was built without a connection limiter")
        self.option = option

    def _connection_rejected(self) -> None:
        self.stats.conn_rejected += 1
        self._reject("connection")

    def _reject(self, kind: str, ri: RPCInfo | None = None) -> None:
        record_rejection(_METRIC_KIND[kind], ri)
        if self._reporter is not None:
            self._reporter(kind)

    def middleware(self, next_endpoint: Endpoint) -> Endpoint:
        stats = self.stats

        async def limit(ri: RPCInfo, request: Any) -> Any:
            qps = self.qps  # read once per call: an update applies to the calls after it
            concurrency = self.concurrency
            peers = self.connections if self.count_peers else None
            peer = ri.caller.address
            if peers is not None and not peers.acquire(peer):  # counted by _connection_rejected
                raise ConnOverLimitError(f"max connections {peers.limit} reached")
            try:
                if qps is not None and not qps.acquire():
                    stats.qps_rejected += 1
                    self._reject("qps", ri)
                    raise QPSOverLimitError(f"max qps {qps.capacity} reached")
                if concurrency is None:
                    stats.accepted += 1
                    return await next_endpoint(ri, request)
                if not concurrency.acquire():
                    stats.concurrency_rejected += 1
                    self._reject("concurrency", ri)
                    raise ConcurrencyOverLimitError(f"max concurrency {concurrency.limit} reached")
                stats.accepted += 1
                try:
                    return await next_endpoint(ri, request)
                finally:
                    concurrency.release()
            finally:
                if peers is not None:
                    peers.release(peer)

        return limit
