"""Caller identity with real Go Kitex, both ways (KITEX-WIRE-2 §17): gRPC's source-/destination-*
headers with Kitex's HTTP/2 meta handlers on, and TTHeader's FromService/FromMethod."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import TransportProtocol, client, server
from kitex_grpc.rpcinfo import RPCInfo
from tests.interop.kitex_peer import GoServer, KitexConventionEcho, go_server, run_go_client_args
from tests.support import NOT_ABOUT_DIALING
from tests.ttheader import support as tt

pytestmark = pytest.mark.interop

Req = echo_pb2.EchoRequest
GRPC_TRANSPORTS = [TransportProtocol.GRPC, TransportProtocol.GRPC_H2]
IDENTITY = ("source-service", "source-method", "destination-service", "destination-method")


@pytest.fixture(scope="module")
def meta_server(kitex_bin: Path) -> Iterator[GoServer]:
    """The Go server with ``server.WithMetaHandler(transmeta.ServerHTTP2Handler)`` (``-http2-meta``)."""
    with go_server(kitex_bin, "-http2-meta") as srv:
        yield srv


@pytest.mark.parametrize("protocol", GRPC_TRANSPORTS, ids=lambda p: p.name)
async def test_go_kitex_server_sees_the_python_caller_over_grpc(
    meta_server: GoServer, protocol: TransportProtocol
) -> None:
    cli = echo_kitex.new_client(
        "echo",
        client.with_host_ports(meta_server.pb),
        client.with_transport_protocol(protocol),
        client.with_client_basic_info("py-caller"),
        NOT_ABOUT_DIALING,
    )
    async with cli:
        seen = json.loads((await cli.Unary(Req(message="meta"))).message)
    assert seen["caller"] == {"service": "py-caller", "method": ""}


async def test_go_kitex_without_the_http2_handler_does_not_read_the_caller(kitex_server: GoServer) -> None:
    # Kitex reads source-service only with ServerHTTP2Handler (§17.2): the headers alone change nothing.
    cli = echo_kitex.new_client(
        "echo",
        client.with_host_ports(kitex_server.pb),
        client.with_transport_protocol(TransportProtocol.GRPC_H2),
        client.with_client_basic_info("py-caller"),
        NOT_ABOUT_DIALING,
    )
    async with cli:
        seen = json.loads((await cli.Unary(Req(message="meta"))).message)
    assert seen["caller"] == {"service": "", "method": ""}


async def test_go_kitex_server_sees_the_python_caller_over_ttheader(kitex_server: GoServer) -> None:
    async with tt.connect(
        kitex_server.thrift, "ttheader", client.with_client_basic_info("py-tt-caller")
    ) as cli:
        seen = json.loads((await cli.echo(tt.Req(message="meta"))).message)
    assert seen["caller"] == {"service": "py-tt-caller", "method": ""}


class Seen:
    """A server tracer that keeps each call's caller and identity headers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def start(self, ri: RPCInfo) -> None:
        return None

    def finish(self, ri: RPCInfo) -> None:
        headers = {k: v for k, v in ri.metadata if k in IDENTITY}
        self.calls.append((ri.caller.service_name, ri.caller.method, headers))


@pytest.mark.parametrize("protocol", GRPC_TRANSPORTS, ids=lambda p: p.name)
async def test_python_server_sees_the_go_kitex_caller_over_grpc(
    kitex_bin: Path, protocol: TransportProtocol
) -> None:
    seen = Seen()
    svr = echo_kitex.new_server(
        KitexConventionEcho(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(protocol),
        server.with_tracer(seen),
    )
    await svr.start()
    try:
        code, results = await run_go_client_args(
            kitex_bin,
            *("-addr", svr.address, "-transport", "grpc", "-case", "unary"),
            *("-http2-meta", "-from-service", "go-caller", "-service", "py-echo"),
        )
    finally:
        await svr.stop()
    assert code == 0 and results["unary"]["ok"], results
    # Kitex's ClientHTTP2Handler: source-method is the method being served when the call is made
    # (none here: ""), destination-* the NewClient name and the method called.
    assert seen.calls == [
        (
            "go-caller",
            "",
            {
                "source-service": "go-caller",
                "source-method": "",
                "destination-service": "py-echo",
                "destination-method": "Unary",
            },
        )
    ]


async def test_python_server_sees_no_caller_from_go_kitex_without_the_handler(kitex_bin: Path) -> None:
    seen = Seen()
    svr = echo_kitex.new_server(
        KitexConventionEcho(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(TransportProtocol.GRPC_H2),
        server.with_tracer(seen),
    )
    await svr.start()
    try:
        code, results = await run_go_client_args(
            kitex_bin,
            "-addr",
            svr.address,
            "-transport",
            "grpc",
            "-case",
            "unary",
            "-from-service",
            "go-caller",
        )
    finally:
        await svr.stop()
    assert code == 0 and results["unary"]["ok"], results
    assert seen.calls == [("", "", {})]  # Kitex sends the headers only with ClientHTTP2Handler


async def test_python_server_sees_the_go_kitex_caller_over_ttheader(kitex_bin: Path) -> None:
    async with tt.serve() as (svr, handler):
        code, results = await run_go_client_args(
            kitex_bin,
            "-addr",
            svr.address,
            "-transport",
            "ttheader",
            "-case",
            "echo",
            "-from-service",
            "go-tt",
        )
    assert code == 0 and results["echo"]["ok"], results
    assert handler.callers == [("go-tt", "")]


class Relay(KitexConventionEcho):
    """A Python service whose Unary calls on to the Go server: the outgoing call is made while serving."""

    downstream: echo_kitex.EchoClient

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        return await self.downstream.Unary(request)


@pytest.mark.parametrize("protocol", GRPC_TRANSPORTS, ids=lambda p: p.name)
async def test_go_kitex_sees_the_served_method_as_source_method(
    meta_server: GoServer, protocol: TransportProtocol
) -> None:
    relay = Relay()
    relay.downstream = echo_kitex.new_client(
        "echo",
        client.with_host_ports(meta_server.pb),
        client.with_transport_protocol(protocol),
        client.with_client_basic_info("py-relay"),
        NOT_ABOUT_DIALING,
    )
    front = echo_kitex.new_server(
        relay, server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(protocol)
    )
    await front.start()
    try:
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(front.address),
            client.with_transport_protocol(protocol),
            NOT_ABOUT_DIALING,
        )
        async with cli:
            seen = json.loads((await cli.Unary(Req(message="meta"))).message)
    finally:
        await front.stop()
        await relay.downstream.close()
    assert seen["caller"] == {"service": "py-relay", "method": "Unary"}
