"""gRPC interop with real Go Kitex (v0.16.3, built from interop/), in both directions."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

import kitex_grpc
from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import TransportProtocol, callopt, client, metainfo, server
from kitex_grpc.errors import BizStatusError, CanceledError, RemoteOrNetworkError, RPCTimeoutError
from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo, StreamingMode
from kitex_grpc.status import StatusCode
from tests.interop.kitex_peer import GoServer, KitexConventionEcho, elapsed_ms, run_go_client
from tests.support import NOT_ABOUT_DIALING

pytestmark = pytest.mark.interop

Req = echo_pb2.EchoRequest
GRPC_TRANSPORTS = [TransportProtocol.GRPC, TransportProtocol.GRPC_H2]


def go_client(server: GoServer, protocol: TransportProtocol) -> echo_kitex.EchoClient:
    return echo_kitex.new_client(
        "echo", client.with_host_ports(server.pb), client.with_transport_protocol(protocol), NOT_ABOUT_DIALING
    )


@pytest.mark.parametrize("protocol", GRPC_TRANSPORTS, ids=lambda p: p.name)
async def test_python_calls_go_kitex_every_call_type(
    kitex_server: GoServer, protocol: TransportProtocol
) -> None:
    async with go_client(kitex_server, protocol) as cli:
        reply = await cli.Unary(Req(message="hello", payload=b"\x00\xff", seq=42))
        assert (reply.message, reply.payload, reply.seq) == ("hello", b"\x00\xff", 42)
        assert [r.seq async for r in cli.ServerStream(Req(message="s", seq=5))] == [0, 1, 2, 3, 4]
        up = await cli.ClientStream()
        for m in "abc":
            await up.send(Req(message=m))
        assert (await up.close_and_recv()).message == "a,b,c"
        bidi = await cli.Bidi()
        for i in range(3):
            await bidi.send(Req(message=f"m{i}", seq=i))
            assert (await bidi.recv()).seq == i
        await bidi.close_send()
        assert [r async for r in bidi] == []


@pytest.mark.parametrize("protocol", GRPC_TRANSPORTS, ids=lambda p: p.name)
async def test_python_to_go_errors_metainfo_deadlines(
    kitex_server: GoServer, protocol: TransportProtocol
) -> None:
    async with go_client(kitex_server, protocol) as cli:
        with pytest.raises(BizStatusError) as biz:
            await cli.Unary(Req(message="biz:1001:bad thing"))
        assert (biz.value.code, biz.value.message, biz.value.extra) == (1001, "bad thing", {"k": "v"})
        assert biz.value.grpc_status is StatusCode.INTERNAL

        with pytest.raises(RemoteOrNetworkError) as plain:
            await cli.Unary(Req(message="error:boom"))
        assert plain.value.detail == "boom [biz error]" and plain.value.grpc_status is StatusCode.INTERNAL

        got = []
        with pytest.raises(BizStatusError):
            async for r in cli.ServerStream(Req(message="biz:7:late", seq=5)):
                got.append(r.seq)
        assert got == [0]

        with metainfo.with_value("temp", "t1"), metainfo.with_persistent_value("PERSIST_KEY", "p1"):
            reply = await cli.Unary(Req(message="meta"), callopt.with_rpc_timeout(5))
        seen = json.loads(reply.message)
        # Kitex upper-cases metainfo keys received over HTTP/2 (KITEX-WIRE.md §3)
        assert seen["transient"] == {"TEMP": "t1"} and seen["persistent"] == {"PERSIST_KEY": "p1"}
        assert 4000 < seen["deadline_ms"] <= 5100  # grpcio rounds grpc-timeout up

        start = time.monotonic()
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="sleep:2000"), callopt.with_rpc_timeout(0.1))
        assert elapsed_ms(start) < 1500

        reply = await cli.Unary(
            Req(message="gzip", payload=b"z" * 6144, seq=7), callopt.with_compression("gzip")
        )
        assert (len(reply.payload), reply.seq) == (6144, 7)


@pytest.mark.parametrize("protocol", GRPC_TRANSPORTS, ids=lambda p: p.name)
async def test_python_cancels_go_kitex_calls(kitex_server: GoServer, protocol: TransportProtocol) -> None:
    async with go_client(kitex_server, protocol) as cli:
        task = asyncio.create_task(cli.Unary(Req(message="sleep:5000")))
        bidi = await cli.Bidi()
        await bidi.send(Req(message="x"))
        assert (await bidi.recv()).message == "x"
        bidi.cancel()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(CanceledError):
            await bidi.recv()
        assert (await cli.Unary(Req(message="after"))).message == "after"


@pytest.mark.parametrize("protocol", GRPC_TRANSPORTS, ids=lambda p: p.name)
async def test_kitex_nonstandard_status_for_unknown_method_and_service(
    kitex_server: GoServer, protocol: TransportProtocol
) -> None:
    types = (echo_pb2.EchoRequest, echo_pb2.EchoReply)
    methods = [MethodInfo("Nope", StreamingMode.UNARY, *types)]
    known = ServiceInfo("Echo", methods, package_name="echo.v1")
    unknown = ServiceInfo("Nope", methods, package_name="echo.v1")
    opts = (client.with_host_ports(kitex_server.pb), client.with_transport_protocol(protocol), NOT_ABOUT_DIALING)
    async with kitex_grpc.new_client(known, "echo", *opts) as cli:
        # unknown method: grpc-status 1 (Kitex's TransError UnknownMethod), not 12
        with pytest.raises(CanceledError) as info:
            await cli.call("Nope", Req())
        assert info.value.grpc_status is StatusCode.CANCELLED and "unknown method Nope" in info.value.detail
    async with kitex_grpc.new_client(unknown, "echo", *opts) as cli:
        # unknown service: grpc-status 20; grpcio's C core reports it as UNKNOWN (2)
        with pytest.raises(RemoteOrNetworkError) as err:
            await cli.call("Nope", Req())
        expected = (
            StatusCode.UNKNOWN if protocol is TransportProtocol.GRPC else StatusCode.KITEX_UNKNOWN_SERVICE
        )
        assert err.value.grpc_status is expected and "unknown service Nope" in err.value.detail


GO_GRPC_CASES = [
    "unary", "server_stream", "client_stream", "bidi", "biz_error", "metainfo", "deadline", "gzip",
    "plain_error", "server_stream_biz_error",
]  # fmt: skip


@pytest.mark.parametrize("protocol", GRPC_TRANSPORTS, ids=lambda p: p.name)
async def test_go_kitex_client_calls_python_server(kitex_bin: Path, protocol: TransportProtocol) -> None:
    svr = echo_kitex.new_server(
        KitexConventionEcho(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(protocol),
    )
    await svr.start()
    try:
        results = await run_go_client(kitex_bin, svr.address, "grpc")
    finally:
        await svr.stop()
    assert sorted(results) == sorted(GO_GRPC_CASES)
    failed = {name: r["error"] for name, r in results.items() if not r["ok"]}
    assert failed == {}
    assert results["biz_error"]["biz_code"] == 1001 and results["biz_error"]["biz_extra"] == {"k": "v"}
    server_seen = results["metainfo"]["result"]["server"]
    assert server_seen["transient"] == {"TEMP": "t1"} and server_seen["persistent"] == {"PERSIST_KEY": "p1"}
    # the client's timer and our server's propagated deadline race; both are correct outcomes
    assert results["deadline"]["result"]["kind"] in ("client_timeout", "server_deadline")
