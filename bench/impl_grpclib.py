"""The grpclib baseline: grpclib's own generated stubs, client and server (pure Python on h2)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from bench import stubs
from bench.adapter import StoppableServer, UnavailableError, close_and_wait, stream_reply_spec

try:
    from grpclib.client import Channel
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError
    from grpclib.server import Server
except ImportError as _exc:  # reported by the probe as "unavailable"
    raise ImportError(f"grpclib is not installed: {_exc}") from _exc


class _Bidi:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def send(self, message: Any) -> None:
        await self._stream.send_message(message)

    async def recv(self) -> Any | None:
        return await self._stream.recv_message()

    async def close_send(self) -> None:
        await self._stream.end()


class GrpclibAdapter:
    def __init__(self) -> None:
        stubs.import_path()
        try:
            self._pb2: Any = importlib.import_module("echo.v1.echo_pb2")
            self._grpc: Any = importlib.import_module("echo.v1.echo_grpc")
        except ImportError as exc:
            raise UnavailableError(f"grpclib stubs: {stubs.failure('grpclib') or exc}") from exc

    async def start_server(self, host: str) -> StoppableServer:
        pb2 = self._pb2

        class Servicer(self._grpc.EchoBase):  # type: ignore[name-defined,misc]
            async def Unary(self, stream: Any) -> None:
                r = await stream.recv_message()
                await stream.send_message(pb2.EchoReply(message=r.message, payload=r.payload, seq=r.seq))

            async def Bidi(self, stream: Any) -> None:
                async for r in stream:
                    await stream.send_message(pb2.EchoReply(message=r.message, payload=r.payload, seq=r.seq))

            async def ServerStream(self, stream: Any) -> None:
                count, fields = stream_reply_spec(await stream.recv_message())
                for _ in range(count):
                    await stream.send_message(pb2.EchoReply(**fields))

            async def ClientStream(self, stream: Any) -> None:
                raise GRPCError(Status.UNIMPLEMENTED)

        server = Server([Servicer()])
        await server.start(host, 0)
        assert server._server is not None  # the asyncio.Server grpclib listens with
        port = server._server.sockets[0].getsockname()[1]
        return StoppableServer(f"{host}:{port}", partial(close_and_wait, server))

    async def connect(self, address: str) -> _Client:
        host, _, port = address.rpartition(":")
        channel = Channel(host, int(port))
        return _Client(self._pb2, channel, self._grpc.EchoStub(channel))


class _Client:
    def __init__(self, pb2: Any, channel: Channel, stub: Any) -> None:
        self._pb2 = pb2
        self._channel = channel
        self._stub = stub
        self.unary = stub.Unary

    def request(self, payload: bytes) -> Any:
        return self._pb2.EchoRequest(message="bench", payload=payload, seq=1)

    async def server_stream(self, request: Any) -> AsyncIterator[Any]:
        async with self._stub.ServerStream.open() as stream:
            await stream.send_message(request, end=True)
            async for reply in stream:
                yield reply

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[_Bidi]:
        async with self._stub.Bidi.open() as stream:
            await stream.send_request()  # headers first, so a receiver task may start before any send
            yield _Bidi(stream)

    async def close(self) -> None:
        self._channel.close()


def adapter(arg: str) -> GrpclibAdapter:
    return GrpclibAdapter()
