"""TTHeader Streaming client transport (KITEX-WIRE-2.md §11.4, §11.5, §11.11).

Streams are multiplexed over ``pool_size`` connections per address, picked round-robin (Kitex's
default mux pool); a connection with no stream for ``max_idle_time`` is closed. Stream ids come from
one process-wide counter (:func:`~kitex_grpc.protocol.ttstream.next_stream_id`).

The opening Header carries int keys 27 and 9, ``isn`` (the IDL service name) and the caller's
metainfo (``RPC_TRANSIT_*`` / ``RPC_PERSIST_*``), as Kitex's; and, beyond Kitex, int key 28 (the
stream's remaining time in milliseconds) when the call has a deadline, which a Kitex server ignores
and a Python server applies to the handler.

Unary calls (ping-pong methods and Thrift ``streaming.mode="unary"``) go over TTHeader, on the same
address: a Kitex client built with ``-streamx`` strips the streaming bits for every unary call
(``client/client.go purifyProtocol``), and its ``StreamingUnary`` methods take the unary path
(``client.go Call``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import TYPE_CHECKING, Any

from kitex_grpc import metainfo
from kitex_grpc.address import parse_address
from kitex_grpc.errors import GetConnectionError, ProtocolError, RemoteOrNetworkError
from kitex_grpc.protocol.ttheader import IntKey
from kitex_grpc.protocol.ttstream import (
    IDL_SERVICE_KEY,
    FrameType,
    StreamFrame,
    encode_stream_frame,
    next_stream_id,
)
from kitex_grpc.transport.ttheader.wire import frame_limit
from kitex_grpc.transport.ttstream.client_stream import ClientStream
from kitex_grpc.transport.ttstream.config import DEFAULT_TTSTREAM, TTStreamConfig
from kitex_grpc.transport.ttstream.conn import StreamConnection
from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    from kitex_grpc.options.client import ClientOptions
    from kitex_grpc.rpcinfo import RPCInfo
    from kitex_grpc.transport.base import ClientTransport

__all__ = ["TTStreamClientTransport"]

_STREAM_TIMEOUT = int(IntKey.STREAM_TIMEOUT)


class ClientConnection(StreamConnection):
    """One pooled connection: its streams by id."""

    def __init__(self, transport: TTStreamClientTransport, address: str, max_frame: int) -> None:
        super().__init__(max_frame)
        self.owner = transport
        self.address = address
        self.streams: dict[int, ClientStream] = {}
        self._idle_timer: asyncio.TimerHandle | None = None

    def frame_received(self, frame: StreamFrame) -> None:
        stream = self.streams.get(frame.sid)
        if stream is not None:
            stream.on_frame(frame)
        # else: a frame for a stream that has ended here (or never existed): ignored, as Kitex does

    def protocol_failed(self, error: ProtocolError) -> None:
        for stream in list(self.streams.values()):
            stream.connection_lost(error)

    def lost(self, error: BaseException | None) -> None:
        self._cancel_idle()
        self.owner.forget(self)
        for stream in list(self.streams.values()):
            stream.connection_lost(error)

    def add(self, stream: ClientStream) -> None:
        self._cancel_idle()
        self.streams[stream.sid] = stream

    def stream_done(self, stream: ClientStream) -> None:
        if self.streams.get(stream.sid) is stream:
            del self.streams[stream.sid]
        if not self.streams and not self.closed:
            self._idle_timer = asyncio.get_running_loop().call_later(
                self.owner.config.max_idle_time, self._idle_expired
            )

    def _cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if not self.streams:
            self.close()


class TTStreamClientTransport:
    """Client streams over TTHeader Streaming (:data:`TransportProtocol.TTHEADER_STREAMING`)."""

    def __init__(self, options: ClientOptions) -> None:
        self._options = options
        self.config: TTStreamConfig = getattr(options, "ttstream", DEFAULT_TTSTREAM)
        self._recv_timeout: float | None = getattr(options, "stream_recv_timeout", None)
        self._max_frame = frame_limit(options.max_message_size)
        self._pools: dict[str, list[ClientConnection]] = {}
        self._turn = itertools.count()
        self._dialing: dict[str, asyncio.Future[ClientConnection]] = {}
        self._unary_transport: ClientTransport | None = None

    # -- connections ----------------------------------------------------------------------------------

    async def _connection(self, address: str) -> ClientConnection:
        pool = self._pools.setdefault(address, [])
        if len(pool) >= self.config.pool_size:
            return pool[next(self._turn) % len(pool)]
        dialing = self._dialing.get(address)
        if dialing is not None:
            return await asyncio.shield(dialing)
        future: asyncio.Future[ClientConnection] = asyncio.get_running_loop().create_future()
        self._dialing[address] = future
        try:
            conn = await self._dial(address)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters (if any) get it too
            raise
        else:
            pool.append(conn)
            future.set_result(conn)
            return conn
        finally:
            del self._dialing[address]

    async def _dial(self, address: str) -> ClientConnection:
        host, port = parse_address("ttstream", address)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.config.dial_timeout):
                _, proto = await loop.create_connection(
                    lambda: ClientConnection(self, address, self._max_frame), host, port
                )
        except TimeoutError:
            raise GetConnectionError(f"dial tcp {address}: i/o timeout") from None
        except OSError as exc:
            raise GetConnectionError(f"dial tcp {address}: {exc}").with_cause(exc) from exc
        return proto

    def forget(self, conn: ClientConnection) -> None:
        pool = self._pools.get(conn.address)
        if pool is not None and conn in pool:
            pool.remove(conn)

    # -- ClientTransport ------------------------------------------------------------------------------

    async def open_stream(self, ri: RPCInfo) -> ClientStream:
        conn = await self._connection(ri.callee.address)
        if conn.closed:
            raise RemoteOrNetworkError("ttstream: connection closed")
        sid = next_stream_id()
        strs = {IDL_SERVICE_KEY: ri.service.service_name}
        strs.update(metainfo.to_ttheader_strinfo())
        ints: dict[int, str] | None = None
        remaining = ri.time_remaining()
        if remaining is not None:
            ints = {_STREAM_TIMEOUT: str(max(1, int(remaining * 1000)))}
        header = encode_stream_frame(FrameType.HEADER, sid, ri.method.name, b"", strs, ints)
        stream = ClientStream(conn, sid, ri, self.config.recv_queue_size, self._recv_timeout)
        conn.add(stream)
        conn.write(header)
        return stream

    async def unary(self, ri: RPCInfo, request: Any) -> Any:
        inner = self._unary_transport
        if inner is None:
            from kitex_grpc.transport.ttheader.client import TTHeaderClientTransport

            opts = dataclasses.replace(self._options, transport_protocol=TransportProtocol.TTHEADER)
            inner = self._unary_transport = TTHeaderClientTransport(opts)
        return await inner.unary(ri, request)

    async def close_address(self, address: str) -> None:
        for conn in self._pools.pop(address, []):
            conn.close()

    async def close(self) -> None:
        for address in list(self._pools):
            await self.close_address(address)
        if self._unary_transport is not None:
            await self._unary_transport.close()
