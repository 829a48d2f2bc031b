"""One call-level suite over every pairing of the gRPC transports (wire compatibility both ways).

Pairs: h2 client -> h2 server, h2 client -> grpc.aio server (our grpcio transport is grpc.aio
underneath), grpc.aio client -> h2 server. Every call type, errors, metadata, deadlines, cancellation,
compression and message size limits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import TransportProtocol, callopt, client, metainfo, server
from kitex_grpc.errors import (
    BizStatusError,
    CanceledError,
    KitexError,
    OverLimitError,
    RemoteOrNetworkError,
    RPCTimeoutError,
)
from kitex_grpc.status import StatusCode
from tests.support import EchoService, Req, connect, serve, wait_for

GRPC = TransportProtocol.GRPC
H2 = TransportProtocol.GRPC_H2
PAIRS = [(H2, H2), (H2, GRPC), (GRPC, H2)]


class Pair:
    def __init__(self, client_tp: TransportProtocol, server_tp: TransportProtocol) -> None:
        self.client_tp = client_tp
        self.server_tp = server_tp

    @asynccontextmanager
    async def run(
        self,
        server_opts: tuple[server.ServerOption, ...] = (),
        client_opts: tuple[client.ClientOption, ...] = (),
        handler: EchoService | None = None,
    ) -> AsyncIterator[tuple[echo_kitex.EchoClient, EchoService]]:
        svc = handler or EchoService()
        async with (
            serve(server.with_transport_protocol(self.server_tp), *server_opts, handler=svc) as (svr, _),
            connect(svr, client.with_transport_protocol(self.client_tp), *client_opts) as cli,
        ):
            yield cli, svc


@pytest.fixture(params=PAIRS, ids=lambda p: f"{p[0].name}->{p[1].name}")
def pair(request: pytest.FixtureRequest) -> Pair:
    client_tp, server_tp = request.param
    return Pair(client_tp, server_tp)


async def test_unary(pair: Pair) -> None:
    async with pair.run() as (cli, _):
        reply = await cli.Unary(Req(message="hi", payload=b"\x00\x01", seq=42))
        assert (reply.message, reply.payload, reply.seq) == ("hi", b"\x00\x01", 42)
        replies = await asyncio.gather(*(cli.Unary(Req(seq=i)) for i in range(50)))
        assert [r.seq for r in replies] == list(range(50))


async def test_unary_handler_error(pair: Pair) -> None:
    async with pair.run() as (cli, _):
        with pytest.raises(RemoteOrNetworkError) as info:
            await cli.Unary(Req(message="error:boom"))
        assert (await cli.Unary(Req(message="after"))).message == "after"
    assert info.value.grpc_status is StatusCode.INTERNAL
    assert info.value.detail == "boom [biz error]"


async def test_unary_biz_status_error(pair: Pair) -> None:
    async with pair.run() as (cli, _):
        with pytest.raises(BizStatusError) as info:
            await cli.Unary(Req(message="biz:1001:not enough credit"))
    err = info.value
    assert (err.code, err.message, err.extra) == (1001, "not enough credit", {"k": "v"})
    assert err.grpc_status is StatusCode.INTERNAL


async def test_unary_deadline_cancels_the_handler(pair: Pair) -> None:
    async with pair.run() as (cli, svc):
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="block"), callopt.with_rpc_timeout(0.2))
        await wait_for(svc.cancelled)
        assert (await cli.Unary(Req(message="ok"), callopt.with_rpc_timeout(5))).message == "ok"


async def test_unary_client_cancel_reaches_the_handler(pair: Pair) -> None:
    async with pair.run() as (cli, svc):
        task = asyncio.create_task(cli.Unary(Req(message="block")))
        await wait_for(svc.entered)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(svc.cancelled)
        assert (await cli.Unary(Req(message="still"))).message == "still"


async def test_metadata_metainfo_and_deadline_reach_the_handler(pair: Pair) -> None:
    async with pair.run() as (cli, _):
        with metainfo.with_value("temp", "t1"), metainfo.with_persistent_value("log_id", "42"):
            reply = await cli.Unary(
                Req(message="meta"), callopt.with_metadata("x-user", "alice"), callopt.with_rpc_timeout(5)
            )
    info = json.loads(reply.message)
    assert info["transient"] == {"TEMP": "t1"}
    assert info["persistent"] == {"LOG_ID": "42"}
    assert info["metadata"] == {"x-user": "alice"}
    assert info["deadline"] is True


async def test_binary_metadata_round_trips(pair: Pair) -> None:
    """-bin metadata to the handler, and -bin trailers back (set by a server middleware)."""
    seen: list[bytes] = []

    def trailer_mw(next_ep):  # type: ignore[no-untyped-def]
        async def ep(ri, req):  # type: ignore[no-untyped-def]
            for k, v in ri.metadata:
                if k == "x-blob-bin":
                    seen.append(v)
            ri.response_metadata.append(("x-out-bin", b"\xff\x00\x01"))
            ri.response_metadata.append(("x-out", "plain"))
            return await next_ep(ri, req)

        return ep

    captured: list[object] = []

    def capture_mw(next_ep):  # type: ignore[no-untyped-def]
        async def ep(ri, req):  # type: ignore[no-untyped-def]
            try:
                return await next_ep(ri, req)
            finally:
                captured.extend(ri.response_metadata)

        return ep

    async with pair.run((server.with_middleware(trailer_mw),), (client.with_middleware(capture_mw),)) as (
        cli,
        _,
    ):
        await cli.Unary(Req(message="x"), callopt.with_metadata("x-blob-bin", b"\x00\x01\xfe"))
    assert seen == [b"\x00\x01\xfe"]
    if pair.client_tp is H2:  # the grpcio client transport does not expose response metadata
        assert ("x-out-bin", b"\xff\x00\x01") in captured and ("x-out", "plain") in captured


async def test_gzip_both_ways(pair: Pair) -> None:
    async with pair.run(client_opts=(client.with_compression("gzip"),)) as (cli, _):
        reply = await cli.Unary(Req(payload=b"a" * 100_000))
        assert reply.payload == b"a" * 100_000
        bidi = await cli.Bidi()
        await bidi.send(Req(payload=b"b" * 50_000, seq=1))
        assert (await bidi.recv()).payload == b"b" * 50_000
        await bidi.close_send()
        assert [r async for r in bidi] == []


async def test_oversized_request_is_resource_exhausted(pair: Pair) -> None:
    async with pair.run((server.with_max_message_size(1024),)) as (cli, _):
        with pytest.raises(OverLimitError) as info:
            await cli.Unary(Req(payload=b"x" * 4096))
        assert info.value.grpc_status is StatusCode.RESOURCE_EXHAUSTED
        assert (await cli.Unary(Req(message="small"))).message == "small"


async def test_oversized_reply_is_resource_exhausted(pair: Pair) -> None:
    async with pair.run(client_opts=(client.with_max_message_size(1024),)) as (cli, _):
        with pytest.raises(OverLimitError):
            await cli.Unary(Req(payload=b"x" * 600, message="y" * 600))
        assert (await cli.Unary(Req(message="small"))).message == "small"


async def test_server_stream(pair: Pair) -> None:
    async with pair.run() as (cli, _):
        assert [r.seq async for r in cli.ServerStream(Req(message="s", seq=5))] == [0, 1, 2, 3, 4]
        got = []
        with pytest.raises(BizStatusError) as info:
            async for r in cli.ServerStream(Req(message="biz:7:late", seq=3)):
                got.append(r.seq)
        assert got == [0] and (info.value.code, info.value.message) == (7, "late")


async def test_server_stream_deadline_and_cancel(pair: Pair) -> None:
    async with pair.run() as (cli, svc):
        with pytest.raises(RPCTimeoutError):
            async for _ in cli.ServerStream(Req(message="block", seq=3), callopt.with_rpc_timeout(0.2)):
                pass
        await wait_for(svc.cancelled)
        svc.cancelled.clear()
        svc.entered.clear()
        call = cli.ServerStream(Req(message="block", seq=3))
        assert (await call.recv()).seq == 0
        await wait_for(svc.entered)
        call.cancel()
        await wait_for(svc.cancelled)


async def test_client_stream(pair: Pair) -> None:
    async with pair.run() as (cli, _):
        stream = await cli.ClientStream()
        for m in ("a", "b", "c"):
            await stream.send(Req(message=m))
        reply = await stream.close_and_recv()
        assert (reply.message, reply.seq) == ("a,b,c", 3)
        stream = await cli.ClientStream()
        await stream.send(Req(message="biz:9:nope"))
        with pytest.raises(BizStatusError) as info:
            await stream.close_and_recv()
        assert info.value.code == 9


async def test_client_stream_cancel_and_deadline(pair: Pair) -> None:
    async with pair.run() as (cli, svc):
        stream = await cli.ClientStream()
        await stream.send(Req(message="block"))
        await wait_for(svc.entered)
        stream.cancel()
        await wait_for(svc.cancelled)
        with pytest.raises(CanceledError):
            await stream.send(Req(message="after cancel"))
        svc.cancelled.clear()
        stream = await cli.ClientStream(callopt.with_rpc_timeout(0.2))
        await stream.send(Req(message="block"))
        with pytest.raises(RPCTimeoutError):
            await stream.close_and_recv()
        await wait_for(svc.cancelled)


async def test_bidi_ping_pong_pipelined_and_error(pair: Pair) -> None:
    async with pair.run() as (cli, _):
        stream = await cli.Bidi()
        for i in range(10):
            await stream.send(Req(message=f"m{i}", seq=i))
            assert (await stream.recv()).seq == i
        await stream.close_send()
        with pytest.raises(EOFError):
            await stream.recv()
        stream = await cli.Bidi()
        for i in range(200):
            await stream.send(Req(seq=i))
        await stream.close_send()
        assert [r.seq async for r in stream] == list(range(200))
        stream = await cli.Bidi()
        await stream.send(Req(message="biz:3:stop"))
        with pytest.raises(BizStatusError):
            await stream.recv()


async def test_bidi_deadline_metadata_and_cancel(pair: Pair) -> None:
    async with pair.run() as (cli, svc):
        stream = await cli.Bidi(callopt.with_rpc_timeout(0.3), callopt.with_metadata("x-trace", "t"))
        await stream.send(Req(message="meta"))
        info = json.loads((await stream.recv()).message)
        assert info["metadata"] == {"x-trace": "t"} and info["deadline"] is True
        await stream.send(Req(message="block"))
        with pytest.raises(RPCTimeoutError):
            await stream.recv()
        await wait_for(svc.cancelled)
        svc.cancelled.clear()
        svc.entered.clear()
        stream = await cli.Bidi()
        await stream.send(Req(message="block"))
        await wait_for(svc.entered)
        stream.cancel()
        await wait_for(svc.cancelled)


async def test_unknown_method_is_unimplemented(pair: Pair) -> None:
    from kitex_grpc import new_client
    from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo, StreamingMode

    ghost = ServiceInfo(
        "Echo",
        (MethodInfo("Nope", StreamingMode.UNARY, Req, Req),),
        package_name="echo.v1",
    )
    other = ServiceInfo("Ghost", (MethodInfo("Unary", StreamingMode.UNARY, Req, Req),), package_name="x")
    async with pair.run() as (cli, _):
        address = cli.client.options.host_ports[0]
        for info in (ghost, other):
            c = new_client(
                info, "echo", client.with_host_ports(address), client.with_transport_protocol(pair.client_tp)
            )
            try:
                with pytest.raises(RemoteOrNetworkError) as err:
                    await c.call(next(iter(info.methods)), Req())
                assert err.value.grpc_status is StatusCode.UNIMPLEMENTED
            finally:
                await c.close()
        assert (await cli.Unary(Req(message="ok"))).message == "ok"


@pytest.mark.parametrize("server_tp", [H2, GRPC], ids=lambda tp: f"H2->{tp.name}")
async def test_reply_headers_over_the_client_limit_fail_that_call_only(server_tp: TransportProtocol) -> None:
    # The handler adds 20 KB of trailers; our client advertised 8 KiB (SETTINGS_MAX_HEADER_LIST_SIZE).
    # Our h2 server, as grpc-go's, will not send them and answers INTERNAL instead; grpc.aio sends
    # them, and our client, as grpc-go's, fails that call INTERNAL and resets the stream. Either way
    # the connection serves the next call.
    def big_trailer(next_ep):  # type: ignore[no-untyped-def]
        async def ep(ri, req):  # type: ignore[no-untyped-def]
            if req.message == "big":
                ri.response_metadata.append(("x-big", "v" * 20_000))
            return await next_ep(ri, req)

        return ep

    pair = Pair(H2, server_tp)
    limit = client.with_grpc_max_header_list_size(8192)
    async with pair.run((server.with_middleware(big_trailer),), (limit,)) as (cli, _):
        with pytest.raises(KitexError) as info:
            await cli.Unary(Req(message="big"))
        assert info.value.grpc_status is StatusCode.INTERNAL
        expected = (
            "violates the peer's maximum" if server_tp is H2 else "peer header list size exceeded limit"
        )
        assert expected in str(info.value)
        assert (await cli.Unary(Req(message="small"))).message == "small"
