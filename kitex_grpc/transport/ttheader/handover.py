"""Which protocol a connection on the TTHeader port speaks, and handing over the ones served elsewhere.

Each connection is classified once from its first 8 bytes (:mod:`kitex_grpc.protocol.detection`,
Kitex ``pkg/remote/trans/detection``). The message framings (:data:`FRAMINGS`) are served by the
connection itself; HTTP/2 (gRPC) goes to the h2 gRPC transport and TTHeader Streaming to the ttstream
server, each with the bytes already read (:func:`hand_over`). A connection handed over
stays counted by the connection limiter until it closes
(:class:`~kitex_grpc.transport.conn_limit.CountedProtocol`).
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

from kitex_grpc.protocol.detection import DetectedProtocol
from kitex_grpc.transport.conn_limit import Adoptable, ConnectionLimiter, CountedProtocol
from kitex_grpc.transport.ttheader.wire import Framing

__all__ = ["FRAMINGS", "Adoptable", "ConnectionLimiter", "hand_over"]

# The framing each detected message protocol is served in (the others are handed over or refused).
FRAMINGS: Final = {
    DetectedProtocol.TTHEADER: Framing.TTHEADER,
    DetectedProtocol.FRAMED: Framing.FRAMED,
    DetectedProtocol.KITEX_PROTOBUF: Framing.FRAMED,
    DetectedProtocol.BUFFERED: Framing.BUFFERED,
}


def hand_over(
    transport: asyncio.Transport,
    proto: Adoptable,
    head: bytes,
    counted: tuple[ConnectionLimiter, object] | None,
) -> None:
    """Make ``proto`` the protocol of ``transport``'s connection, fed ``head`` first.

    Synchronous: called from the old protocol's read callback, it swaps the transport's protocol
    (asyncio's and uvloop's transports both take ``set_protocol`` there), and the next read goes to
    ``proto``. ``counted``: the connection limiter and the key this connection holds in it, released
    when the connection closes.
    """
    if counted is not None:
        proto = CountedProtocol(proto, *counted)
    transport.set_protocol(cast("asyncio.BaseProtocol", proto))
    proto.connection_made(transport)
    proto.data_received(head)
