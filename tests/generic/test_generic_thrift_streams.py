"""Generic JSON calls of Thrift streaming methods (``streaming.mode``): each message is one JSON value
of the bare struct, both ways, over gRPC+thrift (GRPC_H2) and TTHeader Streaming."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import kitex_grpc
from kitex_grpc import client, generic, server
from kitex_grpc.transport_protocol import TransportProtocol
from tests.support import NOT_ABOUT_DIALING
from tests.thrift_streaming.support import ROOT, Req, new_client, serving

IDL = ROOT / "idl" / "stream.thrift"

TRANSPORTS = [TransportProtocol.GRPC_H2, TransportProtocol.TTHEADER_STREAMING]


def generic_client(address: str, protocol: TransportProtocol) -> generic.GenericClient:
    return generic.new_client(
        generic.json_thrift(str(IDL)),
        "stream",
        client.with_host_ports(address),
        client.with_transport_protocol(protocol),
        NOT_ABOUT_DIALING,
    )


@pytest.mark.parametrize("protocol", TRANSPORTS, ids=lambda p: p.name)
async def test_json_client_streams_against_a_typed_server(protocol: TransportProtocol) -> None:
    async with serving(protocol) as (svr, handler), generic_client(svr.address, protocol) as cli:
        replies = [
            json.loads(r)
            async for r in cli.server_stream("EchoServer", json.dumps({"message": "hi", "count": 3}))
        ]
        assert [(r["message"], r["seq"]) for r in replies] == [("hi", 0), ("hi", 1), ("hi", 2)]

        up = await cli.client_stream("EchoClient")
        for word in ("a", "b", "c"):
            await up.send(json.dumps({"message": word}))
        total = json.loads(await up.close_and_recv())
        assert (total["message"], total["seq"]) == ("a,b,c", 3)
        assert [r.message for r in handler.received] == ["a", "b", "c"]  # bare structs reached it

        both = await cli.bidi_stream("EchoBidi")
        await both.send(json.dumps({"message": "x", "seq": 7}))
        assert json.loads(await both.recv())["seq"] == 7
        await both.close_send()
        last = json.loads(await both.recv())
        assert (last["message"], last["seq"]) == ("eof", 1)


class JSONStreams:
    """A generic handler: JSON text in and out, for the three stream kinds."""

    async def call(self, method: str, request: str) -> str:
        return request

    async def server_stream(self, method: str, request: str) -> AsyncIterator[str]:
        value = json.loads(request)
        for i in range(value["count"]):
            yield json.dumps({"message": value["message"], "seq": i})

    async def client_stream(self, method: str, requests: AsyncIterator[str]) -> str:
        words = [json.loads(r)["message"] async for r in requests]
        return json.dumps({"message": "+".join(words), "seq": len(words)})

    async def bidi_stream(self, method: str, requests: AsyncIterator[str]) -> AsyncIterator[str]:
        async for r in requests:
            value = json.loads(r)
            yield json.dumps({"message": value["message"].upper(), "seq": value.get("seq", 0)})


@pytest.mark.parametrize("protocol", TRANSPORTS, ids=lambda p: p.name)
async def test_typed_client_streams_against_a_json_generic_server(protocol: TransportProtocol) -> None:
    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(protocol)
    )
    generic.register_service(svr, generic.json_thrift(str(IDL)), JSONStreams())
    await svr.start()
    try:
        cli: Any = new_client(svr.address, protocol)
        async with cli:
            got = [(r.message, r.seq) async for r in cli.EchoServer(Req(message="m", count=2))]
            assert got == [("m", 0), ("m", 1)]

            up = await cli.EchoClient()
            for word in ("p", "q"):
                await up.send(Req(message=word))
            total = await up.close_and_recv()
            assert (total.message, total.seq) == ("p+q", 2)

            both = await cli.EchoBidi()
            await both.send(Req(message="up", seq=4))
            reply = await both.recv()
            assert (reply.message, reply.seq) == ("UP", 4)
            await both.close_send()
    finally:
        await svr.stop()


@pytest.mark.parametrize("transport", ["grpc-h2", "ttheader-streaming"])
async def test_the_call_command_streams_a_thrift_method(transport: str) -> None:
    from tests.cli.support import run

    protocol = TransportProtocol.GRPC_H2 if transport == "grpc-h2" else TransportProtocol.TTHEADER_STREAMING
    async with serving(protocol) as (svr, _):
        base = ["call", svr.address, "StreamService/EchoServer", "--idl", str(IDL), "--transport", transport]
        result = await asyncio.to_thread(
            run, *base, "--format", "jsonl", "-d", '{"message": "s", "count": 2}'
        )
        assert result.code == 0, result.err
        assert [json.loads(line)["seq"] for line in result.out.splitlines()] == [0, 1]
        bidi = ["call", svr.address, "StreamService/EchoBidi", "--idl", str(IDL), "--transport", transport]
        result = await asyncio.to_thread(
            run, *bidi, "--format", "jsonl", stdin='{"message": "a"}\n{"message": "b"}\n'
        )
        assert result.code == 0, result.err
        assert [json.loads(line)["message"] for line in result.out.splitlines()] == ["a", "b", "eof"]
