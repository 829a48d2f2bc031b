"""A scripted gRPC server on a raw h2 connection: records what a client sends on each stream and
answers with the messages and status it is given (for wire-level checks of our clients)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class Recorded:
    """One request stream: its headers, its body bytes (gRPC frames) and whether the client ended it."""

    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False

    def messages(self) -> list[bytes]:
        """The gRPC messages in the body (each: flag, u32 length, bytes)."""
        out, data = [], bytes(self.body)
        while len(data) >= 5:
            size = int.from_bytes(data[1:5], "big")
            out.append(data[5 : 5 + size])
            data = data[5 + size :]
        return out


class RawGrpcPeer:
    """Answers every stream, once the client has ended it, with ``replies`` and then ``trailers``."""

    def __init__(self, replies: list[bytes], trailers: list[tuple[bytes, bytes]]) -> None:
        self.replies = replies
        self.trailers = trailers
        self.streams: list[Recorded] = []
        self.ended = asyncio.Event()
        self.address = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        by_id: dict[int, Recorded] = {}
        try:
            while data := await reader.read(65536):
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        by_id[ev.stream_id] = rec = Recorded(dict(ev.headers))
                        self.streams.append(rec)
                    elif isinstance(ev, h2.events.DataReceived):
                        by_id[ev.stream_id].body += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        by_id[ev.stream_id].ended = True
                        self._answer(conn, ev.stream_id)
                        self.ended.set()
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    def _answer(self, conn: h2.connection.H2Connection, sid: int) -> None:
        conn.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc+thrift")])
        for body in self.replies:
            conn.send_data(sid, b"\x00" + len(body).to_bytes(4, "big") + body)
        conn.send_headers(sid, self.trailers, end_stream=True)


@asynccontextmanager
async def raw_grpc_peer(
    replies: list[bytes], trailers: list[tuple[bytes, bytes]] | None = None
) -> AsyncIterator[RawGrpcPeer]:
    """A :class:`RawGrpcPeer` on a free 127.0.0.1 port (status 0 unless ``trailers`` say otherwise)."""
    peer = RawGrpcPeer(replies, trailers or [(b"grpc-status", b"0")])
    srv = await asyncio.start_server(peer._serve, "127.0.0.1", 0)
    peer.address = f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    try:
        yield peer
    finally:
        srv.close()
        await srv.wait_closed()
