"""kitex-grpc over TTHeader with a Thrift payload (idl/echo.thrift), against thriftpy2.

Needs two things this build may lack, both checked by constructing them: the ``TTHEADER`` client
transport, and kitex-grpc generated code for idl/echo.thrift (module :data:`GEN_MODULE`, with the same
``new_server``/``new_client``/``EchoHandler`` shape as the protobuf code). Unary only.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bench.adapter import BidiStream, UnavailableError
from kitex_grpc import client, server
from kitex_grpc.transport_protocol import TransportProtocol

GEN_MODULE = "gen.echo.echo_kitex"  # where `kitex-grpc gen idl/echo.thrift -o gen` is expected to write


class _Client:
    def __init__(self, gen: Any, cli: Any) -> None:
        self._gen = gen
        self._cli = cli
        self.unary = cli.echo

    def request(self, payload: bytes) -> Any:
        return self._gen.EchoRequest(message="bench", payload=payload, seq=1)

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[BidiStream]:
        raise UnavailableError("thrift has no streaming calls")
        yield  # pragma: no cover

    async def close(self) -> None:
        await self._cli.close()


class KitexThriftAdapter:
    def __init__(self, protocol: str) -> None:
        self._protocol = TransportProtocol.parse(protocol or "TTHEADER")
        try:
            self._gen: Any = importlib.import_module(GEN_MODULE)
        except ImportError as exc:
            raise UnavailableError(
                f"no kitex-grpc Thrift code for idl/echo.thrift ({GEN_MODULE}): {exc}"
            ) from exc

    async def start_server(self, host: str) -> Any:
        gen = self._gen

        class Handler(gen.EchoHandler):  # type: ignore[name-defined,misc]
            async def echo(self, req: Any) -> Any:
                return gen.EchoReply(message=req.message, payload=req.payload, seq=req.seq)

        svr = gen.new_server(
            Handler(), server.with_service_addr(f"{host}:0"), server.with_transport_protocol(self._protocol)
        )
        try:
            await svr.start()
        except ValueError as exc:
            raise UnavailableError(str(exc)) from exc
        return svr

    async def connect(self, address: str) -> _Client:
        try:
            cli = self._gen.new_client(
                "echo", client.with_host_ports(address), client.with_transport_protocol(self._protocol)
            )
        except ValueError as exc:
            raise UnavailableError(str(exc)) from exc
        return _Client(self._gen, cli)


def adapter(arg: str) -> KitexThriftAdapter:
    return KitexThriftAdapter(arg)
