"""The grpcio baseline: grpcio-tools generated stubs, a grpc.aio client and a grpc.aio server."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import grpc

from bench import stubs
from bench.adapter import StoppableServer, UnavailableError, max_message_size, stream_reply_spec


def _options() -> list[tuple[str, int]]:
    size = max_message_size()
    if size is None:
        return []
    return [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]


class _Bidi:
    def __init__(self, call: Any) -> None:
        self._call = call

    async def send(self, message: Any) -> None:
        await self._call.write(message)

    async def recv(self) -> Any | None:
        message = await self._call.read()
        return None if message is grpc.aio.EOF else message

    async def close_send(self) -> None:
        await self._call.done_writing()


class GrpcAioAdapter:
    def __init__(self) -> None:
        stubs.import_path()
        try:
            self._pb2: Any = importlib.import_module("echo.v1.echo_pb2")
            self._grpc: Any = importlib.import_module("echo.v1.echo_pb2_grpc")
        except ImportError as exc:
            raise UnavailableError(f"grpcio stubs: {stubs.failure('grpcio') or exc}") from exc

    async def start_server(self, host: str) -> StoppableServer:
        pb2 = self._pb2

        class Servicer(self._grpc.EchoServicer):  # type: ignore[name-defined,misc]
            async def Unary(self, request: Any, context: Any) -> Any:
                return pb2.EchoReply(message=request.message, payload=request.payload, seq=request.seq)

            async def ServerStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
                count, fields = stream_reply_spec(request)
                for _ in range(count):
                    yield pb2.EchoReply(**fields)

            async def Bidi(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
                async for r in request_iterator:
                    yield pb2.EchoReply(message=r.message, payload=r.payload, seq=r.seq)

        server = grpc.aio.server(options=_options())
        self._grpc.add_EchoServicer_to_server(Servicer(), server)
        port = server.add_insecure_port(f"{host}:0")
        await server.start()
        return StoppableServer(f"{host}:{port}", partial(server.stop, 1.0))

    async def connect(self, address: str) -> _Client:
        channel = grpc.aio.insecure_channel(address, options=_options())
        await channel.channel_ready()
        return _Client(self._pb2, channel, self._grpc.EchoStub(channel))


class _Client:
    def __init__(self, pb2: Any, channel: grpc.aio.Channel, stub: Any) -> None:
        self._pb2 = pb2
        self._channel = channel
        self._stub = stub
        self.unary = stub.Unary

    def request(self, payload: bytes) -> Any:
        return self._pb2.EchoRequest(message="bench", payload=payload, seq=1)

    async def server_stream(self, request: Any) -> AsyncIterator[Any]:
        call = self._stub.ServerStream(request)
        try:
            async for reply in call:
                yield reply
        finally:
            call.cancel()

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[_Bidi]:
        call = self._stub.Bidi()
        try:
            yield _Bidi(call)
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()


def adapter(arg: str) -> GrpcAioAdapter:
    return GrpcAioAdapter()
