"""Connection limiting at accept, shared by the server transports (KITEX-WIRE.md §4.2).

With ``limit_connections`` a server transport counts every connection before a byte is read (Kitex
``OnActive``): one over the limit is closed with no reply and logged, bounded by the transport's
:class:`~kitex_grpc.transport.eventlog.EventLog` (the limiter itself counts and reports the
rejection: stats, reporter, metrics); a counted connection is released when it closes, also after it
was handed to another protocol (:class:`CountedProtocol`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from kitex_grpc.transport.eventlog import EventLog

__all__ = ["Adoptable", "ConnectionLimiter", "CountedProtocol", "admit"]


class ConnectionLimiter(Protocol):
    """What a server transport's ``limit_connections`` takes
    (:class:`kitex_grpc.governance.limiter.ConnectionLimiter`)."""

    def acquire(self, conn: object) -> bool: ...

    def release(self, conn: object) -> None: ...


def admit(limiter: ConnectionLimiter, conn: object, events: EventLog, server: str, peer: object) -> bool:
    """Count ``conn`` in ``limiter``; over the limit, log it and return ``False``.

    The caller then closes the connection unanswered: nothing was read or written, so the client sees
    a plain close (Kitex ``ErrConnOverLimit``). ``server`` names the transport in the log line.
    """
    if limiter.acquire(conn):
        return True
    events.warning(
        "conn_over_limit",
        "%s server: connection from %s closed: max connections %s reached (ConnOverLimit)",
        server,
        peer,
        getattr(limiter, "limit", "?"),
    )
    return False


class Adoptable(Protocol):
    """A protocol that takes a connection over: an :class:`asyncio.Protocol`, or a buffered one (h2's)
    that also takes ``data_received``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


class CountedProtocol(asyncio.Protocol):
    """Wraps a protocol a connection was handed to, so its limiter key is released when it closes."""

    __slots__ = ("_inner", "_key", "_limiter")

    def __init__(self, inner: Adoptable, limiter: ConnectionLimiter, key: object) -> None:
        self._inner = inner
        self._limiter: ConnectionLimiter | None = limiter
        self._key = key

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release(self._key)
        self._inner.connection_lost(exc)
