"""TTHeader / TTHeaderFramed / Framed and Kitex Protobuf interop with real Go Kitex (v0.16.3)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import TransportProtocol, callopt, client, metainfo, server
from kitex_grpc.errors import BizStatusError, RPCTimeoutError, TApplicationType
from kitex_grpc.thrift import MissingResultError
from kitex_grpc.transport.ttheader.errors import ApplicationError
from tests.interop.kitex_peer import GoServer, KitexConventionEcho, elapsed_ms, run_go_client
from tests.ttheader.support import Req, connect, echo_thrift, serve

pytestmark = pytest.mark.interop

THRIFT_TRANSPORTS = ["ttheader", "ttheader_framed", "framed"]
HEADER_TRANSPORTS = ["ttheader", "ttheader_framed"]


@pytest.mark.parametrize("transport", THRIFT_TRANSPORTS)
async def test_python_calls_go_thrift_server(kitex_server: GoServer, transport: str) -> None:
    async with connect(kitex_server.thrift, transport) as cli:
        reply = await cli.echo(Req(message="hello", payload=b"\x00\x01\x02\xfe\xff", seq=42))
        assert (reply.message, reply.payload, reply.seq) == ("hello", b"\x00\x01\x02\xfe\xff", 42)

        sent = f"notify-{time.monotonic_ns()}-{transport}"
        assert await cli.notify(Req(message=sent)) is None
        last = ""
        for _ in range(150):  # poll the Go server's state (<= 3 s), as the Go client's oneway case does
            last = (await cli.echo(Req(message="last-notify"))).message
            if last == sent:
                break
            await asyncio.sleep(0.02)
        assert last == sent

        with pytest.raises(echo_thrift.EchoError) as exc:
            await cli.fail(Req(message="boom", seq=7))
        assert (exc.value.code, exc.value.message) == (7, "boom")

        with pytest.raises(ApplicationError) as app:
            await cli.echo(Req(message="error:boom"))
        assert app.value.type_id == TApplicationType.INTERNAL_ERROR
        assert str(app.value) == "remote or network error[remote]: biz error: boom"


@pytest.mark.parametrize("transport", HEADER_TRANSPORTS)
async def test_python_mux_client_pipelines_to_a_go_server(kitex_server: GoServer, transport: str) -> None:
    # A Go Kitex server without WithMuxTransport answers a pipelined connection in order; the mux
    # client matches the replies by seq id either way.
    async with connect(kitex_server.thrift, transport, client.with_mux_connection(2)) as cli:
        replies = await asyncio.wait_for(
            asyncio.gather(*(cli.echo(Req(message=f"m{i}", seq=i)) for i in range(100))), 10
        )
        assert [(r.message, r.seq) for r in replies] == [(f"m{i}", i) for i in range(100)]
        assert cli.client._transport.open_connections(kitex_server.thrift) == 2


@pytest.mark.parametrize("transport", HEADER_TRANSPORTS)
async def test_python_to_go_biz_error_metainfo_and_timeout_key(
    kitex_server: GoServer, transport: str
) -> None:
    async with connect(kitex_server.thrift, transport) as cli:
        with pytest.raises(BizStatusError) as biz:
            await cli.echo(Req(message="biz:1001:bad thing"))
        assert (biz.value.code, biz.value.message, biz.value.extra) == (1001, "bad thing", {"k": "v"})

        with (
            metainfo.with_value("temp", "t1"),
            metainfo.with_persistent_value("PERSIST_KEY", "p1"),
            metainfo.with_backward_values() as backward,
        ):
            reply = await cli.echo(Req(message="meta"), callopt.with_rpc_timeout(5))
        seen = json.loads(reply.message)
        assert seen["transient"] == {"temp": "t1"} and seen["persistent"] == {"PERSIST_KEY": "p1"}
        assert 4000 < seen["deadline_ms"] <= 5000  # int key 12 became the Go handler's deadline
        assert backward.received["backward-key"] == "backward-value"

        start = time.monotonic()
        with pytest.raises((RPCTimeoutError, ApplicationError)) as timeout:
            await cli.echo(Req(message="sleep:1000"), callopt.with_rpc_timeout(0.1))
        assert elapsed_ms(start) < 900
        if isinstance(timeout.value, ApplicationError):  # the Go handler's deadline won the race
            assert "deadline exceeded" in str(timeout.value)


async def test_python_to_go_framed_loses_biz_status_and_metainfo(kitex_server: GoServer) -> None:
    async with connect(kitex_server.thrift, "framed") as cli:
        with pytest.raises(MissingResultError):
            await cli.echo(Req(message="biz:1001:bad thing"))
        with metainfo.with_value("temp", "t1"):
            seen = json.loads((await cli.echo(Req(message="meta"), callopt.with_rpc_timeout(5))).message)
        # Framed has no header: no metainfo, no deadline, no caller identity
        caller = {"service": "", "method": ""}
        assert seen == {"deadline_ms": -1, "persistent": {}, "transient": {}, "caller": caller}


@pytest.mark.parametrize("transport", ["ttheader_framed", "ttheader", "framed"])
async def test_python_calls_go_protobuf_server_over_kitex_protobuf(
    kitex_server: GoServer, transport: str
) -> None:
    cli = echo_kitex.new_client(
        "echo", client.with_host_ports(kitex_server.pb), client.with_transport_protocol(transport)
    )
    async with cli:
        reply = await cli.Unary(echo_pb2.EchoRequest(message="hello", payload=b"\x00\xff", seq=42))
        assert (reply.message, reply.payload, reply.seq) == ("hello", b"\x00\xff", 42)
        with pytest.raises(ApplicationError, match="boom"):
            await cli.Unary(echo_pb2.EchoRequest(message="error:boom"))
        if transport != "framed":
            with pytest.raises(BizStatusError) as biz:
                await cli.Unary(echo_pb2.EchoRequest(message="biz:1001:bad thing"))
            assert (biz.value.code, biz.value.message, biz.value.extra) == (1001, "bad thing", {"k": "v"})


@pytest.mark.parametrize("transport", THRIFT_TRANSPORTS)
async def test_go_client_calls_python_thrift_server(kitex_bin: Path, transport: str) -> None:
    async with serve() as (svr, _):
        results = await run_go_client(kitex_bin, svr.address, transport)
    expected = {"echo", "oneway", "exception", "app_error", "timeout"}
    if transport != "framed":
        expected |= {"biz_error", "metainfo"}
    assert expected <= set(results), results
    failed = {name: r for name, r in results.items() if not r["ok"]}
    assert not failed, failed


async def test_go_clients_of_every_thrift_transport_share_one_python_port(kitex_bin: Path) -> None:
    async with serve() as (svr, _):
        runs = await asyncio.gather(
            *(run_go_client(kitex_bin, svr.address, t, "echo") for t in THRIFT_TRANSPORTS)
        )
    assert all(r["echo"]["ok"] for r in runs), runs


async def test_go_kitex_protobuf_client_calls_python(kitex_bin: Path) -> None:
    svr = echo_kitex.new_server(
        KitexConventionEcho(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(TransportProtocol.TTHEADER_FRAMED),
    )
    async with svr:
        results = await run_go_client(kitex_bin, svr.address, "kitexpb")
    assert {"unary", "biz_error", "plain_error"} <= set(results), results
    failed = {name: r for name, r in results.items() if not r["ok"]}
    assert not failed, failed


async def test_go_grpc_and_kitex_protobuf_clients_share_one_python_port(kitex_bin: Path) -> None:
    svr = echo_kitex.new_server(
        KitexConventionEcho(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(TransportProtocol.TTHEADER_FRAMED),
    )
    async with svr:
        grpc_run, kpb_run = await asyncio.gather(
            run_go_client(kitex_bin, svr.address, "grpc", "unary"),
            run_go_client(kitex_bin, svr.address, "kitexpb", "unary"),
        )
    assert grpc_run["unary"]["ok"] and kpb_run["unary"]["ok"], (grpc_run, kpb_run)
