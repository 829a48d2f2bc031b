"""Caller identity over gRPC (KITEX-WIRE-2 §17): the four headers every call carries, ``:authority``
as Kitex sets it, and the server's ``ri.caller`` read from ``source-service`` / ``source-method``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import client, rpcinfo, server
from kitex_grpc.errors import KitexError
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.transport_protocol import TransportProtocol
from tests.support import EchoService, Reply, Req, connect, serve

GRPC, GRPC_H2 = TransportProtocol.GRPC, TransportProtocol.GRPC_H2
PAIRS = [(GRPC, GRPC), (GRPC, GRPC_H2), (GRPC_H2, GRPC), (GRPC_H2, GRPC_H2)]
IDENTITY = ("source-service", "source-method", "destination-service", "destination-method")


class Seen:
    """A server tracer that keeps, per finished call, the caller and the identity headers it got.

    A server's tracer finishes before the reply (or a stream's trailers) is sent, so a call's entry is
    here once the client has the reply.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []

    def start(self, ri: RPCInfo) -> None:
        return None

    def finish(self, ri: RPCInfo) -> None:
        headers = {k: v for k, v in ri.metadata if k in IDENTITY}
        self.calls.append((ri.method.name, ri.caller.service_name, ri.caller.method, headers))


@pytest.mark.parametrize(("client_tp", "server_tp"), PAIRS, ids=lambda p: p.name)
async def test_the_client_sends_the_identity_and_the_server_reads_the_caller(
    client_tp: TransportProtocol, server_tp: TransportProtocol
) -> None:
    seen = Seen()
    async with (
        serve(server.with_transport_protocol(server_tp), server.with_tracer(seen)) as (svr, _),
        connect(
            svr, client.with_transport_protocol(client_tp), client.with_client_basic_info("py-caller")
        ) as cli,
    ):
        assert (await cli.Unary(Req(message="hi"))).message == "hi"
        stream = await cli.Bidi()
        await stream.send(Req(message="one"))
        assert (await stream.recv()).message == "one"
        await stream.close_send()
        with pytest.raises(EOFError):
            await stream.recv()
    expected = {"source-service": "py-caller", "source-method": "", "destination-service": "echo"}
    assert seen.calls == [
        ("Unary", "py-caller", "", {**expected, "destination-method": "Unary"}),
        ("Bidi", "py-caller", "", {**expected, "destination-method": "Bidi"}),
    ]


class Relay(EchoService):
    """Calls on to ``downstream`` from inside its own Unary handler."""

    downstream: echo_kitex.EchoClient

    async def Unary(self, request: Req) -> Reply:
        return await self.downstream.Unary(request)


@pytest.mark.parametrize("tp", [GRPC, GRPC_H2], ids=lambda p: p.name)
async def test_a_call_made_while_serving_sends_the_served_method_as_source_method(
    tp: TransportProtocol,
) -> None:
    seen = Seen()
    relay = Relay()
    async with (
        serve(server.with_transport_protocol(tp), server.with_tracer(seen)) as (end, _),
        connect(end, client.with_transport_protocol(tp), client.with_client_basic_info("relay-svc")) as down,
        serve(server.with_transport_protocol(tp), handler=relay) as (front, _),
        connect(front, client.with_transport_protocol(tp)) as cli,
    ):
        relay.downstream = down
        assert (await cli.Unary(Req(message="x"))).message == "x"
    assert seen.calls == [
        (
            "Unary",
            "relay-svc",
            "Unary",
            {
                "source-service": "relay-svc",
                "source-method": "Unary",
                "destination-service": "echo",
                "destination-method": "Unary",
            },
        )
    ]


async def test_a_call_without_identity_headers_leaves_the_caller_unknown() -> None:
    # A plain gRPC client (grpcio without our transport) sends none: the caller stays empty.
    import grpc

    seen = Seen()
    async with serve(server.with_transport_protocol(GRPC_H2), server.with_tracer(seen)) as (svr, _):
        channel = grpc.aio.insecure_channel(svr.address)
        try:
            call = channel.unary_unary(
                "/echo.v1.Echo/Unary",
                request_serializer=Req.SerializeToString,
                response_deserializer=Reply.FromString,
            )
            assert (await call(Req(message="plain"), timeout=5)).message == "plain"
        finally:
            await channel.close()
    assert seen.calls == [("Unary", "", "", {})]
    assert rpcinfo.current() is None


@contextlib.asynccontextmanager
async def recording_h2_server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A bare HTTP/2 server that records each request's headers and answers UNIMPLEMENTED."""
    requests: list[dict[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        requests.append({str(k): str(v) for k, v in event.headers or ()})
                        conn.send_headers(
                            event.stream_id,
                            [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12")],
                            end_stream=True,
                        )
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{listener.sockets[0].getsockname()[1]}", requests
    finally:
        listener.close()


@pytest.mark.parametrize("tp", [GRPC, GRPC_H2], ids=lambda p: p.name)
async def test_authority_is_the_destination_service_name_on_the_wire(tp: TransportProtocol) -> None:
    async with recording_h2_server() as (address, requests):
        cli = echo_kitex.new_client(
            "echo-dest",
            client.with_host_ports(address),
            client.with_transport_protocol(tp),
            client.with_client_basic_info("wire-caller"),
            client.with_connect_timeout(5),
        )
        try:
            with pytest.raises(KitexError):
                await cli.Unary(Req(message="x"))
        finally:
            await cli.close()
    assert len(requests) == 1
    headers = requests[0]
    assert headers[":authority"] == "echo-dest"
    assert headers[":path"] == "/echo.v1.Echo/Unary"
    assert {k: headers[k] for k in IDENTITY} == {
        "source-service": "wire-caller",
        "source-method": "",
        "destination-service": "echo-dest",
        "destination-method": "Unary",
    }


async def test_the_server_access_log_names_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kitex_grpc.access")
    async with (
        serve(server.with_transport_protocol(GRPC_H2), server.with_access_log()) as (svr, _),
        connect(
            svr, client.with_transport_protocol(GRPC_H2), client.with_client_basic_info("log-caller")
        ) as cli,
    ):
        await cli.Unary(Req(message="x"))
    [record] = [r for r in caplog.records if r.name == "kitex_grpc.access"]
    assert (record.__dict__["caller"], record.__dict__["caller_method"]) == ("log-caller", "")
    assert " caller=log-caller " in record.getMessage()


@pytest.mark.parametrize("tp", [GRPC, GRPC_H2], ids=lambda p: p.name)
async def test_an_acl_rule_can_refuse_a_caller_by_name(tp: TransportProtocol) -> None:
    def deny_untrusted(ri: RPCInfo, request: Any) -> str | None:
        return (
            f"caller {ri.caller.service_name!r} is not allowed"
            if ri.caller.service_name != "trusted"
            else None
        )

    async with serve(server.with_transport_protocol(tp), server.with_acl_rules(deny_untrusted)) as (svr, _):
        async with connect(
            svr, client.with_transport_protocol(tp), client.with_client_basic_info("trusted")
        ) as ok:
            assert (await ok.Unary(Req(message="in"))).message == "in"
        async with connect(
            svr, client.with_transport_protocol(tp), client.with_client_basic_info("other")
        ) as bad:
            with pytest.raises(KitexError, match="caller 'other' is not allowed"):
                await bad.Unary(Req(message="out"))
