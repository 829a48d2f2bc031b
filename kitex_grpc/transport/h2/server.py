"""The h2 server transport: asyncio ``create_server`` with one :class:`ServerConnection` per socket.

Limits (KITEX-WIRE.md §4.2): with :meth:`H2ServerTransport.limit_connections` every connection,
accepted or adopted, is counted before a byte is read (Kitex ``OnActive``); one over the limit is
closed without a reply and logged (the limiter itself counts and reports the rejection); a counted
connection is released when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from kitex_grpc.address import format_address, parse_address
from kitex_grpc.protocol.h2_call import GrpcServerConnection
from kitex_grpc.transport.conn_limit import ConnectionLimiter, admit
from kitex_grpc.transport.eventlog import EventLog
from kitex_grpc.transport.h2 import config as _config
from kitex_grpc.transport.h2.config import H2Tuning
from kitex_grpc.transport.h2.server_conn import ServerConnection
from kitex_grpc.transport.listeners import ServerGroup, bound_address

if TYPE_CHECKING:
    import ssl

    from kitex_grpc.transport.base import CallDispatcher
    from kitex_grpc.transport.settings import ServerSettings

logger = logging.getLogger("kitex_grpc.transport.h2")

# After the exit wait time, cancelled handlers get this long to unwind before stop() returns.
_CANCEL_GRACE = 1.0


class _LimitedConnection(ServerConnection):
    """A :class:`ServerConnection` counted by a connection limiter from accept to close."""

    _limiter: ConnectionLimiter | None = None
    _refused = False

    def bind_limiter(self, limiter: ConnectionLimiter) -> _LimitedConnection:
        self._limiter = limiter
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limiter = self._limiter
        if limiter is not None and not admit(
            limiter, self, self._events, "h2", transport.get_extra_info("peername")
        ):
            self._limiter = None
            self._refused = True
            self.closed = True
            transport.close()  # nothing was read or written: the client sees a plain close
            return
        super().connection_made(transport)

    def data_received(self, data: bytes | memoryview) -> None:
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release(self)
        if self._refused:
            if not self.done.done():
                self.done.set_result(None)
            return
        super().connection_lost(exc)


class H2ServerTransport:
    """A :class:`~kitex_grpc.transport.base.ServerTransport` speaking gRPC over our own HTTP/2.

    Listening: :meth:`start` binds ``options.service_addr`` (h2c with prior knowledge, or TLS with
    ALPN ``h2`` when ``options.tls`` is set) and :meth:`stop` drains.

    Adoption (another server, e.g. TTHeader sniffing HTTP/2 on the same port, hands a connection
    over; :meth:`start` need not be called)::

        proto = h2.connection_protocol()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        proto.data_received(already_read_bytes)    # the bytes sniffed so far, preface included

    and on shutdown ``await h2.drain_adopted(grace)``: every connection this transport serves (adopted
    or accepted) gets GOAWAY, in-flight calls may finish within ``grace`` seconds, then the
    connections close. :meth:`stop` does the same after closing its own listener.

    ``tuning`` holds the transport's knobs (:class:`~kitex_grpc.transport.h2.config.H2Tuning`); the
    ``server.with_grpc_*`` options (windows, keepalive, max header list size, MAX_CONCURRENT_STREAMS)
    are applied on top.
    """

    def __init__(
        self, options: ServerSettings, dispatcher: CallDispatcher, tuning: H2Tuning | None = None
    ) -> None:
        self._options = options
        self.dispatcher = dispatcher
        base = tuning if tuning is not None else _config.SERVER_TUNING
        self._tuning = tuning = base.with_options(options)  # the with_grpc_* options win
        self._ssl: ssl.SSLContext | None = None
        if options.tls is not None:
            self._ssl = options.tls.server_ssl_context(["h2"])
        self._config = tuning.core_config(
            max_message_size=options.max_message_size, scheme="http" if self._ssl is None else "https"
        )
        self._server: asyncio.Server | ServerGroup | None = None
        self._address = ""
        self.connections: set[ServerConnection] = set()
        self.conn_limiter: ConnectionLimiter | None = None
        # Repeated protocol events of every connection (refusals, floods): a few lines a second.
        self.events = EventLog(logger)

    @property
    def address(self) -> str:
        return self._address

    def limit_connections(self, limiter: ConnectionLimiter) -> None:
        """Count connections at accept with ``limiter``; close the ones over its limit unanswered.

        ``limiter`` (:class:`kitex_grpc.governance.limiter.ConnectionLimiter`) has
        ``acquire(conn) -> bool`` and ``release(conn)``; each connection (accepted, or adopted through
        :meth:`connection_protocol`) acquires once when it is made and releases when it closes.
        """
        self.conn_limiter = limiter

    def connection_protocol(self) -> ServerConnection:
        """A fresh protocol for one connection (what ``create_server`` calls, and what adopters use)."""
        args = (
            GrpcServerConnection(self._config),
            self._tuning,
            self.dispatcher,
            self._address,
            self.connections,
        )
        limiter = self.conn_limiter
        if limiter is None:
            return ServerConnection(*args, events=self.events)
        return _LimitedConnection(*args, events=self.events).bind_limiter(limiter)

    async def start(self) -> None:
        if self._options.listeners:  # with_listener: serve the sockets given
            self._server = await ServerGroup.serve(
                self.connection_protocol, self._options.listeners, ssl=self._ssl
            )
            self._address = bound_address(self._options.listeners)
            return
        host, port = parse_address("with_service_addr", self._options.service_addr, allow_port_zero=True)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self.connection_protocol, host or None, port, ssl=self._ssl, reuse_address=True
        )
        self._server = server
        sockname = server.sockets[0].getsockname()
        self._address = format_address(host or "0.0.0.0", int(sockname[1]))

    async def stop(self, grace: float) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # stop accepting; connections are drained below
        await self.drain_adopted(grace)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CANCEL_GRACE):
                    await server.wait_closed()

    async def drain_adopted(self, grace: float) -> None:
        """Drain every connection: GOAWAY, let calls finish within ``grace`` seconds, then close."""
        connections = list(self.connections)
        for conn in connections:
            conn.begin_drain()
        pending = [conn.done for conn in connections if not conn.done.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        tasks: list[asyncio.Task[None]] = []
        for conn in list(self.connections):
            tasks.extend(conn.force_close())
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_GRACE)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in our structures over all connections (tests check that this stays bounded)."""
        return sum(conn.buffered_bytes for conn in self.connections)
