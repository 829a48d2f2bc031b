"""The floor under every transport: plain asyncio sockets moving the same bytes, and nothing else.

Each message is a u32 length and the payload; the server echoes each one back (unary, bidi), or, for a
stream request (the length ``0xFFFFFFFF``, then u32 count and u32 size), writes ``count`` messages of
``size`` bytes. No encoding, no header, no copy beyond what asyncio's streams make: what this moves per
second is the most a Python process on asyncio moves over loopback on this machine (bench/large.py).
Unary calls use a pool of connections, one call at a time on each, as Kitex's long connections do.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

from bench.adapter import StoppableServer, close_and_wait

_U32 = struct.Struct(">I")
_STREAM = 0xFFFFFFFF
_STREAM_HEAD = struct.Struct(">III")


class RawRequest:
    """What the load generators pass to a call: the payload, and a stream request's count and size."""

    def __init__(self, payload: bytes, message: str = "", seq: int = 0) -> None:
        self.payload = payload
        self.message = message
        self.seq = seq


class RawReply:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    (size,) = _U32.unpack(await reader.readexactly(4))
    return await reader.readexactly(size)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readexactly(4)
            except asyncio.IncompleteReadError:
                return
            (size,) = _U32.unpack(head)
            if size == _STREAM:
                count, each = struct.unpack(">II", await reader.readexactly(8))
                payload = b"s" * each
                prefix = _U32.pack(each)
                for _ in range(count):
                    writer.write(prefix)
                    writer.write(payload)
                    await writer.drain()
                continue
            body = await reader.readexactly(size)
            writer.write(head)
            writer.write(body)
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


class _Bidi:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def send(self, message: RawRequest) -> None:
        self._writer.write(_U32.pack(len(message.payload)))
        self._writer.write(message.payload)
        await self._writer.drain()

    async def recv(self) -> RawReply | None:
        try:
            return RawReply(await _read_message(self._reader))
        except asyncio.IncompleteReadError:
            return None

    async def close_send(self) -> None:
        self._writer.write_eof()


class _Client:
    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._writers: list[asyncio.StreamWriter] = []

    def request(self, payload: bytes) -> RawRequest:
        return RawRequest(payload)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self._host, self._port, limit=1 << 20)
        self._writers.append(writer)
        return reader, writer

    async def unary(self, request: RawRequest) -> RawReply:
        conn = self._idle.pop() if self._idle else await self._open()
        reader, writer = conn
        writer.write(_U32.pack(len(request.payload)))
        writer.write(request.payload)
        await writer.drain()
        reply = RawReply(await _read_message(reader))
        self._idle.append(conn)
        return reply

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[_Bidi]:
        reader, writer = await self._open()
        yield _Bidi(reader, writer)

    async def server_stream(self, request: RawRequest) -> AsyncIterator[RawReply]:
        reader, writer = await self._open()
        writer.write(_STREAM_HEAD.pack(_STREAM, request.seq, int(request.message)))
        for _ in range(request.seq):
            yield RawReply(await _read_message(reader))

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()


class RawAdapter:
    async def start_server(self, host: str) -> StoppableServer:
        server = await asyncio.start_server(_serve, host, 0, limit=1 << 20)
        port = server.sockets[0].getsockname()[1]
        return StoppableServer(f"{host}:{port}", partial(close_and_wait, server))

    async def connect(self, address: str) -> Any:
        host, _, port = address.rpartition(":")
        return _Client(host, int(port))


def adapter(arg: str) -> RawAdapter:
    return RawAdapter()
