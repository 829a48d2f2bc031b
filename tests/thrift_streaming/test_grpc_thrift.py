"""Thrift over gRPC (``application/grpc+thrift``) between our own clients and servers, on both gRPC
server transports (grpcio and the h2 one) and on the TTHeader port's HTTP/2 detection: ping-pong and
"unary" with the Args/Result wrappers (IDL exceptions inside the Result, status 0), the three stream
kinds with bare structs, biz errors, errors mid-stream, cancel, timeout, metainfo, stream middlewares
(issue 27 items 1 and 3; KITEX-WIRE-2.md §12)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kitex_grpc import callopt, client, metainfo, server
from kitex_grpc.errors import BizStatusError, CanceledError, KitexError, RPCTimeoutError
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.status import StatusCode
from kitex_grpc.streaming import RecvEndpoint, SendEndpoint
from kitex_grpc.transport_protocol import TransportProtocol
from tests.thrift_streaming.support import (
    Reply,
    Req,
    StreamError,
    StreamHandler,
    new_client,
    serving,
    with_missing_method,
)

GRPC = TransportProtocol.GRPC
H2 = TransportProtocol.GRPC_H2
# (server transport, client transport): the TTHeader server answers HTTP/2 on its port by detection
PAIRS = [(H2, H2), (GRPC, GRPC), (GRPC, H2), (H2, GRPC), (TransportProtocol.TTHEADER, H2)]
IDS = ["h2-h2", "grpcio-grpc", "grpcio-h2", "h2-grpc", "ttheaderport-h2"]


@pytest.fixture(params=PAIRS, ids=IDS)
def pair(request: pytest.FixtureRequest) -> tuple[TransportProtocol, TransportProtocol]:
    value: tuple[TransportProtocol, TransportProtocol] = request.param
    return value


async def test_ping_pong_and_unary_mode_carry_args_and_result(pair: Any) -> None:
    async with serving(pair[0]) as (svr, _), new_client(svr.address, pair[1]) as cli:
        reply = await cli.Echo(Req(message="hi", payload=b"\x00\xff", seq=7))
        assert reply == Reply(message="hi", payload=b"\x00\xff", seq=7)
        assert await cli.EchoUnary(Req(message="u", seq=1)) == Reply(message="u", seq=1)


async def test_idl_exception_is_raised_as_its_class(pair: Any) -> None:
    async with serving(pair[0]) as (svr, _), new_client(svr.address, pair[1]) as cli:
        for method in (cli.Echo, cli.EchoUnary):
            with pytest.raises(StreamError) as info:
                await method(Req(message="exception:7:bad input"))
            assert (info.value.code, info.value.message) == (7, "bad input")


async def test_biz_error_on_unary_and_at_the_end_of_a_stream(pair: Any) -> None:
    async with serving(pair[0]) as (svr, _), new_client(svr.address, pair[1]) as cli:
        with pytest.raises(BizStatusError) as info:
            await cli.Echo(Req(message="biz:1001:bad thing"))
        assert (info.value.code, info.value.message, info.value.extra) == (1001, "bad thing", {"k": "v"})
        got = []
        with pytest.raises(BizStatusError) as info:
            async for reply in cli.EchoServer(Req(message="biz:1002:late", count=2)):
                got.append(reply.seq)
        assert got == [0, 1]  # every reply sent before the error arrives first
        assert (info.value.code, info.value.message, info.value.extra) == (1002, "late", {"k": "v"})


@pytest.mark.parametrize("count", [0, 1, 10_000])
async def test_server_stream_delivers_every_reply(pair: Any, count: int) -> None:
    async with serving(pair[0]) as (svr, _), new_client(svr.address, pair[1]) as cli:
        async with asyncio.timeout(60):
            seqs = [r.seq async for r in cli.EchoServer(Req(message="s", payload=b"p", count=count))]
        assert seqs == list(range(count))


@pytest.mark.parametrize("count", [0, 1, 10_000])
async def test_client_stream_and_bidi_carry_every_message(pair: Any, count: int) -> None:
    async with serving(pair[0]) as (svr, _), new_client(svr.address, pair[1]) as cli, asyncio.timeout(60):
        upload = await cli.EchoClient()
        for i in range(count):
            await upload.send(Req(message="m", seq=i))
        reply = await upload.close_and_recv()
        assert (reply.seq, reply.message) == (count, ",".join(["m"] * count))

        bidi = await cli.EchoBidi()

        async def sender() -> None:
            for i in range(count):
                await bidi.send(Req(message="b", seq=i))
            await bidi.close_send()  # half-close: the server still answers after it

        task = asyncio.create_task(sender())
        replies = [r async for r in bidi]
        await task
        assert [r.seq for r in replies] == [*range(count), count]
        assert replies[-1].message == "eof"


async def test_server_ends_the_stream_first_while_the_client_still_sends(pair: Any) -> None:
    async with serving(pair[0]) as (svr, _), new_client(svr.address, pair[1]) as cli:
        bidi = await cli.EchoBidi()
        await bidi.send(Req(message="one", seq=1))
        assert (await bidi.recv()).seq == 1
        await bidi.send(Req(message="stop"))
        with pytest.raises(EOFError):
            await bidi.recv()


async def test_handler_error_mid_stream_ends_it_with_internal(pair: Any) -> None:
    async with serving(pair[0]) as (svr, _), new_client(svr.address, pair[1]) as cli:
        bidi = await cli.EchoBidi()
        await bidi.send(Req(message="x", seq=1))
        assert (await bidi.recv()).seq == 1
        await bidi.send(Req(message="error:boom"))
        with pytest.raises(KitexError) as info:
            await bidi.recv()
        assert info.value.grpc_status is StatusCode.INTERNAL
        assert "boom" in str(info.value)
        # an IDL exception raised in a stream is a plain handler error there (no typed exceptions)
        upload = await cli.EchoClient()
        await upload.send(Req(message="exception:3:nope"))
        with pytest.raises(KitexError) as info:
            await upload.close_and_recv()
        assert info.value.grpc_status is StatusCode.INTERNAL and "nope" in str(info.value)


async def test_client_cancel_mid_stream_reaches_the_handler(pair: Any) -> None:
    async with serving(pair[0]) as (svr, handler), new_client(svr.address, pair[1]) as cli:
        bidi = await cli.EchoBidi()
        await bidi.send(Req(message="block"))
        async with asyncio.timeout(5):
            await handler.entered.wait()
        bidi.cancel()
        with pytest.raises(CanceledError):
            await bidi.recv()
        async with asyncio.timeout(5):
            await handler.cancelled.wait()


async def test_stream_deadline_ends_the_call_with_a_timeout(pair: Any) -> None:
    async with serving(pair[0]) as (svr, handler), new_client(svr.address, pair[1]) as cli:
        call = cli.EchoServer(Req(message="block", count=1), callopt.with_rpc_timeout(0.3))
        assert (await call.recv()).seq == 0
        with pytest.raises(RPCTimeoutError) as info:
            await call.recv()
        assert info.value.grpc_status is StatusCode.DEADLINE_EXCEEDED
        async with asyncio.timeout(5):
            await handler.cancelled.wait()


async def test_metainfo_travels_on_unary_and_streams(pair: Any) -> None:
    async with serving(pair[0]) as (svr, _), new_client(svr.address, pair[1]) as cli:
        with metainfo.with_value("tk", "tv"), metainfo.with_persistent_value("pk", "pv"):
            unary = json.loads((await cli.Echo(Req(message="meta"))).message)
            streamed = [json.loads(r.message) async for r in cli.EchoServer(Req(message="meta"))]
        for got in (unary, streamed[0]):
            # HTTP/2 metainfo keys arrive upper-cased (KITEX-WIRE.md §3)
            assert got["transient"] == {"TK": "tv"} and got["persistent"] == {"PK": "pv"}


async def test_unknown_method_is_unimplemented_on_a_stream(pair: Any) -> None:
    info_missing = with_missing_method()
    async with serving(pair[0]) as (svr, _), new_client(svr.address, pair[1], info=info_missing) as cli:
        bidi = await cli.Missing()
        with pytest.raises(KitexError) as info:
            await bidi.recv()
        assert info.value.grpc_status is StatusCode.UNIMPLEMENTED


async def test_stream_middlewares_see_every_bare_struct(pair: Any) -> None:
    seen: list[tuple[str, Any]] = []

    def spy_send(name: str) -> Any:
        def mw(next_endpoint: SendEndpoint) -> SendEndpoint:
            async def send(ri: RPCInfo, message: Any) -> None:
                seen.append((name, message))
                await next_endpoint(ri, message)

            return send

        return mw

    def spy_recv(name: str) -> Any:
        def mw(next_endpoint: RecvEndpoint) -> RecvEndpoint:
            async def recv(ri: RPCInfo) -> Any:
                message = await next_endpoint(ri)
                seen.append((name, message))
                return message

            return recv

        return mw

    opts = (server.with_stream_send_middleware(spy_send("s-send")),
            server.with_stream_recv_middleware(spy_recv("s-recv")))  # fmt: skip
    async with serving(pair[0], *opts) as (svr, _):
        cli_opts = (client.with_stream_send_middleware(spy_send("c-send")),
                    client.with_stream_recv_middleware(spy_recv("c-recv")))  # fmt: skip
        async with new_client(svr.address, pair[1], *cli_opts) as cli:
            bidi = await cli.EchoBidi()
            await bidi.send(Req(message="a", seq=1))
            await bidi.send(Req(message="b", seq=2))
            await bidi.close_send()
            replies = [r async for r in bidi]
    assert [r.seq for r in replies] == [1, 2, 2]
    assert [m for n, m in seen if n == "c-send"] == [Req(message="a", seq=1), Req(message="b", seq=2)]
    assert [m for n, m in seen if n == "s-recv"] == [Req(message="a", seq=1), Req(message="b", seq=2)]
    assert [m for n, m in seen if n == "s-send"] == replies
    assert [m for n, m in seen if n == "c-recv"] == replies


async def requests(*messages: Any) -> AsyncIterator[Any]:
    for message in messages:
        yield message


def test_handler_shapes_match_protobuf_streams() -> None:
    # handlers: async generator (server, bidi) or async function of an async iterator (client)
    handler = StreamHandler()
    assert asyncio.iscoroutinefunction(handler.EchoClient)
    assert not asyncio.iscoroutinefunction(handler.EchoBidi)
    assert not asyncio.iscoroutinefunction(handler.EchoServer)
