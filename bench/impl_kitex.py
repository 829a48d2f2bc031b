"""kitex-grpc over any of its transports: our generated client against our generated server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bench.adapter import UnavailableError, max_message_size, stream_reply_spec
from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import Server, client, server
from kitex_grpc.transport_protocol import TransportProtocol


class _Handler(echo_kitex.EchoHandler):
    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        return echo_pb2.EchoReply(message=request.message, payload=request.payload, seq=request.seq)

    async def ServerStream(  # type: ignore[override]
        self, request: echo_pb2.EchoRequest
    ) -> AsyncIterator[echo_pb2.EchoReply]:
        count, fields = stream_reply_spec(request)
        for _ in range(count):
            yield echo_pb2.EchoReply(**fields)

    async def Bidi(  # type: ignore[override]
        self, requests: AsyncIterator[echo_pb2.EchoRequest]
    ) -> AsyncIterator[echo_pb2.EchoReply]:
        async for r in requests:
            yield echo_pb2.EchoReply(message=r.message, payload=r.payload, seq=r.seq)


class _Bidi:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def send(self, message: Any) -> None:
        await self._stream.send(message)

    async def recv(self) -> Any | None:
        try:
            return await self._stream.recv()
        except EOFError:
            return None

    async def close_send(self) -> None:
        await self._stream.close_send()


class _Client:
    def __init__(self, cli: echo_kitex.EchoClient) -> None:
        self._cli = cli
        # Bound once, as a user holding the client would: the call itself is what we measure.
        self.unary = cli.Unary

    def request(self, payload: bytes) -> echo_pb2.EchoRequest:
        return echo_pb2.EchoRequest(message="bench", payload=payload, seq=1)

    async def server_stream(self, request: echo_pb2.EchoRequest) -> AsyncIterator[echo_pb2.EchoReply]:
        call = self._cli.ServerStream(request)
        try:
            while True:
                try:
                    yield await call.recv()
                except EOFError:
                    return
        finally:
            call.cancel()

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[_Bidi]:
        stream = await self._cli.Bidi()
        try:
            yield _Bidi(stream)
        finally:
            stream.cancel()

    async def close(self) -> None:
        await self._cli.close()


def _sized(option: Any) -> list[Any]:
    size = max_message_size()
    return [] if size is None else [option(size)]


class KitexAdapter:
    def __init__(self, protocol: str) -> None:
        self._protocol = TransportProtocol.parse(protocol)

    async def start_server(self, host: str) -> Server:
        svr = echo_kitex.new_server(
            _Handler(),
            server.with_service_addr(f"{host}:0"),
            server.with_transport_protocol(self._protocol),
            *_sized(server.with_max_message_size),
        )
        try:
            await svr.start()
        except ValueError as exc:  # "the GRPC_H2 server transport is not available in this build"
            raise UnavailableError(str(exc)) from exc
        return svr

    async def connect(self, address: str) -> _Client:
        try:
            cli = echo_kitex.new_client(
                "echo",
                client.with_host_ports(address),
                client.with_transport_protocol(self._protocol),
                *_sized(client.with_max_message_size),
            )
        except ValueError as exc:
            raise UnavailableError(str(exc)) from exc
        return _Client(cli)


def adapter(arg: str) -> KitexAdapter:
    return KitexAdapter(arg or "GRPC")
