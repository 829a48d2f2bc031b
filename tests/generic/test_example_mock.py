"""examples/generic/mock_server.py: a mock from an IDL answers a typed client and the CLI's reflection."""

from __future__ import annotations

import json

import pytest

from examples.generic.mock_server import mock_server
from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client, server, thrift
from kitex_grpc.generic.reflection import ReflectionSession
from tests.generic.support import RICH_IDL, rich_thrift
from tests.support import NOT_ABOUT_DIALING


async def test_proto_mock_answers_canned_and_echoed_replies() -> None:
    svr = mock_server(
        "protos/echo/v1/echo.proto",
        {"Unary": '{"message": "mocked", "seq": 7}'},
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol("grpc_h2"),
    )
    async with svr:
        opts = (
            client.with_host_ports(svr.address),
            client.with_transport_protocol("grpc_h2"),
            NOT_ABOUT_DIALING,
        )
        cli = echo_kitex.new_client("echo", *opts)
        try:
            assert await cli.Unary(echo_pb2.EchoRequest(message="x")) == echo_pb2.EchoReply(
                message="mocked", seq=7
            )
            bidi = await cli.Bidi()
            await bidi.send(echo_pb2.EchoRequest(message="echoed", seq=2))
            assert await bidi.recv() == echo_pb2.EchoReply(message="echoed", seq=2)
            await bidi.close_send()
        finally:
            await cli.close()
        async with ReflectionSession(svr.address, *opts[1:]) as session:
            assert "echo.v1.Echo" in await session.list_services()


@pytest.mark.parametrize("transport", ["ttheader", "framed"])
async def test_thrift_mock(transport: str) -> None:
    reply = json.dumps({"big": 42, "tags": ["m"]})
    svr = mock_server(
        str(RICH_IDL),
        {"Echo": reply},
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(transport),
    )
    async with svr:
        opts = (
            client.with_host_ports(svr.address),
            client.with_transport_protocol(transport),
            NOT_ABOUT_DIALING,
        )
        async with thrift.new_client(rich_thrift.Rich, "rich", *opts) as cli:
            got = await cli.Echo(rich_thrift.RichRequest(big=1))
            assert (got.big, got.tags) == (42, ["m"])
