"""Servers for the generic tests: the rich Thrift IDL served typed, and helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import client, server
from kitex_grpc.generic.thrift_idl import load_idl
from tests.support import NOT_ABOUT_DIALING

IDL_DIR = Path(__file__).parent / "idl"
RICH_IDL = IDL_DIR / "rich.thrift"
RICH_PROTO = IDL_DIR / "rich.proto"
rich_thrift: Any = load_idl(RICH_IDL).module
TTHEADER_TRANSPORTS = ["ttheader", "ttheader_framed", "framed"]
THRIFT_TRANSPORTS = [*TTHEADER_TRANSPORTS, "grpc_h2", "grpc"]


class TypedRich:
    """The Rich service, typed: Echo echoes (or raises RichError for big == -1), Name greets."""

    def __init__(self) -> None:
        self.calls = 0
        self.fired = asyncio.Event()
        self.pinged: list[int] = []

    async def Echo(self, req: Any) -> Any:
        self.calls += 1
        if req.big == -1:
            raise rich_thrift.RichError(code=7, reason="minus one")
        return req

    async def Name(self, who: str) -> str:
        return f"hello {who}"

    async def Ping(self, n: int) -> None:
        self.pinged.append(n)

    async def Fire(self, req: Any) -> None:
        self.fired.set()


@asynccontextmanager
async def serve_with(
    register: Any, transport: str = "ttheader", *opts: server.ServerOption
) -> AsyncIterator[kitex_grpc.Server]:
    """A server on a free port with what ``register(svr)`` registers."""
    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(transport), *opts
    )
    register(svr)
    await svr.start()
    try:
        yield svr
    finally:
        await svr.stop()


def client_opts(
    svr: kitex_grpc.Server, transport: str, *opts: client.ClientOption
) -> list[client.ClientOption]:
    return [
        client.with_host_ports(svr.address),
        client.with_transport_protocol(transport),
        NOT_ABOUT_DIALING,
        *opts,
    ]
