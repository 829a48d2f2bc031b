"""Server transport: one TCP port for TTHeader, TTHeaderFramed, Framed, Buffered and Kitex Protobuf.

This module chooses the listener and runs the server's life: start, the timeout sweep, the connection
limit at accept, and the graceful stop. The rest lives by job:

* :mod:`.server_conn`: one connection's reads, detection, decoding, timeouts and writes;
* :mod:`.handover`: which protocol a connection speaks; HTTP/2 (gRPC) connections are handed to the
  h2 gRPC transport, TTHeader Streaming ones to the ttstream server;
* :mod:`.scheduler`: when a connection's requests run (each on a task of its own), and in which
  order;
* :mod:`.serving`: what a request means: routing, the call, the reply or exception (Kitex's error
  handling).

Limits (KITEX-WIRE.md §4.2): with :meth:`TTHeaderServerTransport.limit_connections` every accepted
connection is counted before a byte is read (Kitex ``OnActive``); one over the limit is closed with
no reply, logged, and counted as a connection-limit rejection (the limiter's ``rejected`` and
:func:`~kitex_grpc.observability.metrics.record_rejection`). A connection handed to HTTP/2 stays
counted until it closes. The QPS limit applies per request, in the server's ``limit`` middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import MutableSet
from typing import Any, Final, Protocol, cast

from kitex_grpc.address import format_address, parse_address
from kitex_grpc.transport.base import CallDispatcher
from kitex_grpc.transport.eventlog import EventLog
from kitex_grpc.transport.h2.server import H2ServerTransport
from kitex_grpc.transport.listeners import ServerGroup
from kitex_grpc.transport.settings import ServerSettings
from kitex_grpc.transport.ttheader.config import frame_limit
from kitex_grpc.transport.ttheader.handover import ConnectionLimiter, hand_over
from kitex_grpc.transport.ttheader.server_conn import ServerConnection
from kitex_grpc.transport.ttheader.serving import RequestServing
from kitex_grpc.transport.ttstream.server import TTStreamServer

__all__ = ["ConnectionLimiter", "TTHeaderServerTransport"]

logger = logging.getLogger("kitex_grpc.transport.ttheader")


class _Listener(Protocol):
    """What stop() needs of the listener: an asyncio.Server or a ServerGroup."""

    def close(self) -> None: ...


_BACKLOG: Final = 1024  # the listening sockets' accept queue
DRAIN_QUIET: Final = 1.0  # seconds: while draining, a connection used more recently stays open


class TTHeaderServerTransport:
    """Serves every registered service on one TCP listener (``loop.create_server``, or the sockets
    given with ``with_listener``), on whichever asyncio event loop runs it."""

    def __init__(self, options: ServerSettings, dispatcher: CallDispatcher) -> None:
        self._options = options
        self.dispatcher = dispatcher
        self.max_frame = frame_limit(options.max_message_size)
        # A MutableSet: a watcher may replace this attribute with a set subclass (as the tests do).
        self.connections: MutableSet[ServerConnection] = set()
        self._server: _Listener | None = None
        # Per-connection events a peer can repeat at will (bad frames, truncated messages, connections
        # over the limit): the first of a kind is logged at once, then one line per second with a count.
        self.events = EventLog(logger)
        self.serving = RequestServing(dispatcher, self.events)
        self._idle = asyncio.Event()
        self._h2: H2ServerTransport | None = None  # made for the first HTTP/2 connection
        self._ttstream: TTStreamServer | None = None  # made for the first TTHeader Streaming connection
        self.conn_limiter: ConnectionLimiter | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def address(self) -> str:
        return self.serving.address

    @property
    def draining(self) -> bool:
        """A graceful stop has begun."""
        return self.serving.draining

    def limit_connections(self, limiter: ConnectionLimiter) -> None:
        """Count connections at accept with ``limiter``; close the ones over its limit unanswered.

        ``limiter`` (:class:`kitex_grpc.governance.limiter.ConnectionLimiter`) has
        ``acquire(conn) -> bool`` and ``release(conn)``; each connection acquires once when accepted and
        releases when it closes.
        """
        self.conn_limiter = limiter

    async def start(self) -> None:
        if self._options.tls is not None:
            raise ValueError("with_tls: the TTHeader transports do not support TLS")
        host, port = parse_address("with_service_addr", self._options.service_addr, allow_port_zero=True)
        loop = asyncio.get_running_loop()
        given = self._options.listeners  # with_listener: serve the sockets given
        if given:
            self._server = await ServerGroup.serve(lambda: ServerConnection(self), given)
            bound = given[0].getsockname()
        else:
            server = await loop.create_server(
                lambda: ServerConnection(self), host or None, port, reuse_address=True, backlog=_BACKLOG
            )
            self._server = server
            # a tuple on asyncio's loop, a list on uvloop's
            bound = cast("Any", server).sockets[0].getsockname()
        self.serving.address = format_address(host or (bound[0] if given else "0.0.0.0"), bound[1])
        self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def _sweep_interval(self) -> float:
        # One timer for all connections: a stalled read is closed within a quarter of its timeout
        # after the limit (at most 1 s after), instead of a timer per request.
        opts = self._options
        return min(1.0, max(0.01, min(opts.max_conn_idle_time, opts.read_write_timeout) / 4))

    def _sweep(self) -> None:
        self._sweeper = None
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        now = time.monotonic()  # the connections' idle clock
        opts = self._options
        for conn in list(self.connections):
            conn.check_timeouts(now, opts.max_conn_idle_time, opts.read_write_timeout)
        self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def forget(self, conn: ServerConnection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    def adopt_http2(
        self,
        transport: asyncio.Transport,
        head: bytes,
        counted: tuple[ConnectionLimiter, object] | None = None,
    ) -> None:
        """Hand an HTTP/2 connection (gRPC) to the h2 transport, with the bytes already read.

        ``counted``: the connection limiter and the key this connection holds in it; it is released
        when the connection closes.
        """
        if self._h2 is None:
            self._h2 = H2ServerTransport(self._options, self.dispatcher)
        hand_over(transport, self._h2.connection_protocol(), head, counted)

    def adopt_ttstream(
        self,
        transport: asyncio.Transport,
        head: bytes,
        counted: tuple[ConnectionLimiter, object] | None = None,
    ) -> None:
        """Hand a TTHeader Streaming connection to :mod:`kitex_grpc.transport.ttstream.server`."""
        if self._ttstream is None:
            self._ttstream = TTStreamServer(self._options, self.dispatcher, self.events, self.max_frame)
        hand_over(transport, self._ttstream.protocol(self.address), head, counted)

    async def stop(self, grace: float) -> None:
        """Stop listening; answer in-flight requests (with ``crrst``) within ``grace``; then close.

        Adopted HTTP/2 connections are drained by the h2 transport (GOAWAY) at the same time.
        """
        server, self._server = self._server, None
        if server is None:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.serving.draining = True
        # A hand-over completes inside one read callback: no connection is between two transports
        # when the drains below begin (each is this server's, the h2 transport's or ttstream's).
        server.close()
        drains = [self._drain(grace)]
        if self._h2 is not None:
            drains.append(self._h2.drain_adopted(grace))
        if self._ttstream is not None:
            drains.append(self._ttstream.drain(grace))
        await asyncio.gather(*drains)

    async def _drain(self, grace: float) -> None:
        # A connection used within DRAIN_QUIET stays open while draining: a client may be writing its
        # next request right now, and closing would lose it ("closed by peer"). That request is
        # answered with crrst, which retires the connection at the client (Kitex ConnResetTag), and
        # the connection closes after the reply. One quiet for DRAIN_QUIET is closed.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.connections:
            self._idle.clear()
            now = time.monotonic()  # the connections' activity clock
            for conn in list(self.connections):
                conn.drain(now, DRAIN_QUIET)
            left = deadline - loop.time()
            if not self.connections or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, DRAIN_QUIET / 4)):
                    await self._idle.wait()
        if self.connections:
            logger.warning(
                "ttheader server: %d connection(s) still busy after the %.1fs exit wait; closing",
                len(self.connections),
                grace,
            )
            for conn in list(self.connections):
                conn.abort()
