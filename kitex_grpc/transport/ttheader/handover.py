"""Which protocol a connection on the TTHeader port speaks, and handing over the ones served elsewhere.

Each connection is classified once from its first 8 bytes (:mod:`kitex_grpc.protocol.detection`,
Kitex ``pkg/remote/trans/detection``). The message framings (:data:`FRAMINGS`) are served by the
connection itself; HTTP/2 (gRPC) goes to the h2 gRPC transport and TTHeader Streaming to the ttstream
server, each with the bytes already read (:meth:`HandOver.hand_over`). A connection handed over
stays counted by the connection limiter until it closes
(:class:`~kitex_grpc.transport.conn_limit.CountedProtocol`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Final, cast

from kitex_grpc.protocol.detection import DetectedProtocol
from kitex_grpc.transport.conn_limit import Adoptable, ConnectionLimiter, CountedProtocol
from kitex_grpc.transport.epoll_io import EpollTransport
from kitex_grpc.transport.ttheader.wire import Framing

__all__ = ["FRAMINGS", "Adoptable", "ConnectionLimiter", "HandOver"]

logger = logging.getLogger("kitex_grpc.transport.ttheader")

# The framing each detected message protocol is served in (the others are handed over or refused).
FRAMINGS: Final = {
    DetectedProtocol.TTHEADER: Framing.TTHEADER,
    DetectedProtocol.FRAMED: Framing.FRAMED,
    DetectedProtocol.KITEX_PROTOBUF: Framing.FRAMED,
    DetectedProtocol.BUFFERED: Framing.BUFFERED,
}


class _Primed(asyncio.Protocol):
    """Gives a new transport to ``inner`` together with the bytes read before it existed."""

    def __init__(self, inner: Adoptable, head: bytes) -> None:
        self._inner = inner
        self._head = head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Before the transport's first read: the head comes first, and every later callback goes to
        # inner directly.
        transport.set_protocol(cast("asyncio.BaseProtocol", self._inner))
        self._inner.connection_made(transport)
        self._inner.data_received(self._head)


class HandOver:
    """Moves accepted connections to another protocol's :class:`asyncio.Protocol`, one server's worth."""

    def __init__(self) -> None:
        self._adoptions: set[asyncio.Task[None]] = set()  # sockets being handed to asyncio's transport

    def hand_over(
        self,
        transport: asyncio.Transport,
        proto: Adoptable,
        head: bytes,
        counted: tuple[ConnectionLimiter, object] | None,
    ) -> None:
        """Make ``proto`` the protocol of ``transport``'s connection, fed ``head`` first.

        ``counted``: the connection limiter and the key this connection holds in it, released when the
        connection closes. A connection on the epoll listener moves to an asyncio transport (its
        socket is detached), which happens on a task: :meth:`settle` waits for those under way.
        """
        if counted is not None:
            proto = CountedProtocol(proto, *counted)
        if isinstance(transport, EpollTransport):  # asyncio's own transport takes the socket over
            task = asyncio.get_running_loop().create_task(self._adopt_socket(transport.detach(), proto, head))
            self._adoptions.add(task)
            task.add_done_callback(self._adoptions.discard)
            return
        transport.set_protocol(cast("asyncio.BaseProtocol", proto))
        proto.connection_made(transport)
        proto.data_received(head)

    async def settle(self) -> None:
        """Wait until the connections being handed over have their new transport."""
        if self._adoptions:
            await asyncio.gather(*self._adoptions, return_exceptions=True)

    async def _adopt_socket(self, sock: socket.socket, proto: Adoptable, head: bytes) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: _Primed(proto, head), sock)
        except Exception as exc:
            logger.warning("ttheader server: cannot hand a connection over: %s", exc)
            sock.close()
            proto.connection_lost(exc)  # a CountedProtocol releases its limiter key
