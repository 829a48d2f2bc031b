"""TTHeader Streaming, Python client to Python server on a real loopback port (KITEX-WIRE-2.md §11)."""

from __future__ import annotations

import asyncio
import json

import pytest

from kitex_grpc import callopt, client, metainfo, server
from kitex_grpc.errors import BizStatusError, CanceledError, RPCTimeoutError
from kitex_grpc.transport.ttheader.errors import ApplicationError
from kitex_grpc.transport.ttstream.config import TTStreamConfig
from tests.ttstream.support import Request, StreamError, connect, serve

LIMIT = 10.0  # every test is bounded


async def test_bidi_echoes_in_order_and_ends_cleanly() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), connect(svr.address) as cli:
        stream = await cli.EchoBidi()
        for i in range(5):
            await stream.send(Request(message=f"m{i}", seq=i))
        await stream.close_send()
        got = [(r.message, r.seq) async for r in stream]
        assert got == [(f"m{i}", i) for i in range(5)]


@pytest.mark.parametrize("count", [0, 1, 10_000])
async def test_bidi_counts(count: int) -> None:
    async with asyncio.timeout(60), serve() as (svr, _), connect(svr.address) as cli:
        stream = await cli.EchoBidi()

        async def sender() -> None:
            for i in range(count):
                await stream.send(Request(message="x", seq=i))
            await stream.close_send()

        task = asyncio.create_task(sender())
        seqs = [r.seq async for r in stream]
        await task
        assert seqs == list(range(count))


async def test_server_stream_and_client_stream() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), connect(svr.address) as cli:
        replies = [r.seq async for r in cli.EchoServer(Request(message="ok", count=4))]
        assert replies == [0, 1, 2, 3]
        cs = await cli.EchoClient()
        for m in ("a", "b", "c"):
            await cs.send(Request(message=m))
        reply = await cs.close_and_recv()
        assert (reply.message, reply.seq) == ("a,b,c", 3)


async def test_unary_methods_go_over_ttheader_on_the_same_port() -> None:
    # A Kitex -streamx client sends ping-pong and streaming.mode="unary" methods over its non-streaming
    # transport (client/client.go purifyProtocol); so does this one, IDL exceptions included.
    async with asyncio.timeout(LIMIT), serve() as (svr, _), connect(svr.address) as cli:
        reply = await cli.EchoUnary(Request(message="u", seq=7))
        assert (reply.message, reply.seq) == ("u", 7)
        assert (await cli.Echo(Request(message="p"))).message == "p"
        with pytest.raises(StreamError) as info:
            await cli.Echo(Request(message="idl-exception"))
        assert (info.value.code, info.value.message) == (3, "declared")
        transport = cli.client._transport
        assert sum(len(p) for p in transport._pools.values()) == 0  # no ttstream connection was made


async def test_biz_error_arrives_after_every_reply() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), connect(svr.address) as cli:
        got = []
        with pytest.raises(BizStatusError) as info:
            async for r in cli.EchoServer(Request(message="biz:7:bad", count=2)):
                got.append(r.seq)
        assert got == [0, 1]
        assert (info.value.code, info.value.message, info.value.extra) == (7, "bad", {"k": "v"})


async def test_handler_error_mid_stream_is_an_exception_trailer() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), connect(svr.address) as cli:
        stream = await cli.EchoBidi()
        await stream.send(Request(message="one"))
        assert (await stream.recv()).message == "one"
        await stream.send(Request(message="error:boom"))
        with pytest.raises(ApplicationError) as info:
            await stream.recv()
        assert info.value.type_id == 6
        assert "biz error: boom" in str(info.value)


async def test_metainfo_and_deadline_reach_the_handler() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), connect(svr.address) as cli:
        with metainfo.with_value("tk", "tv"), metainfo.with_persistent_value("pk", "pv"):
            stream = await cli.EchoBidi()
        await stream.send(Request(message="meta"))
        info = json.loads((await stream.recv()).message)
        assert info == {"transient": {"tk": "tv"}, "persistent": {"pk": "pv"}, "deadline": False}
        await stream.close_send()
        with pytest.raises(EOFError):
            await stream.recv()
        stream = await cli.EchoBidi(callopt.with_rpc_timeout(5))
        await stream.send(Request(message="meta"))
        assert json.loads((await stream.recv()).message)["deadline"] is True
        await stream.close_send()


async def test_handler_trailer_pairs_reach_the_client() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), connect(svr.address) as cli:
        stream = await cli.EchoBidi()
        await stream.send(Request(message="trailer"))
        await stream.recv()
        await stream.close_send()
        with pytest.raises(EOFError):
            await stream.recv()
        assert stream.ri.response_trailers == [("x-cost", "3")]


async def test_client_cancel_reaches_the_handler() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, handler), connect(svr.address) as cli:
        stream = await cli.EchoBidi()
        await stream.send(Request(message="block"))
        await handler.entered.wait()
        stream.cancel()
        await handler.cancelled.wait()
        with pytest.raises(CanceledError):
            await stream.recv()


async def test_client_deadline_cancels_the_stream_on_both_sides() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, handler), connect(svr.address) as cli:
        stream = await cli.EchoBidi(callopt.with_rpc_timeout(0.3))
        await stream.send(Request(message="block"))
        with pytest.raises(RPCTimeoutError):
            await stream.recv()
        await handler.cancelled.wait()


async def test_recv_timeout_option() -> None:
    async with (
        asyncio.timeout(LIMIT),
        serve() as (svr, handler),
        connect(svr.address, client.with_stream_recv_timeout(0.2)) as cli,
    ):
        stream = await cli.EchoBidi()
        await stream.send(Request(message="x"))
        assert (await stream.recv()).message == "x"
        await stream.send(Request(message="block"))
        with pytest.raises(RPCTimeoutError, match="Recv timeout"):
            await stream.recv()
        await handler.cancelled.wait()


async def test_many_streams_share_one_connection() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), connect(svr.address) as cli:

        async def one(i: int) -> list[int]:
            stream = await cli.EchoBidi()
            for j in range(3):
                await stream.send(Request(message="m", seq=i * 10 + j))
            await stream.close_send()
            return [r.seq async for r in stream]

        results = await asyncio.gather(*(one(i) for i in range(50)))
        assert results == [[i * 10 + j for j in range(3)] for i in range(50)]
        transport = cli.client._transport
        assert sum(len(p) for p in transport._pools.values()) == 1


async def test_pool_size_connections_round_robin_and_idle_close() -> None:
    config = TTStreamConfig(pool_size=2, max_idle_time=0.2)
    async with (
        asyncio.timeout(LIMIT),
        serve() as (svr, _),
        connect(svr.address, client.with_ttheader_streaming_options(config)) as cli,
    ):
        streams = [await cli.EchoBidi() for _ in range(4)]
        pool = cli.client._transport._pools[svr.address]
        assert len(pool) == 2
        assert sorted(len(conn.streams) for conn in pool) == [2, 2]
        for stream in streams:
            await stream.close_send()
            with pytest.raises(EOFError):
                await stream.recv()
        conns = list(pool)
        for _ in range(400):  # bounded: each connection closes 0.2 s after its last stream
            if all(conn.closed for conn in conns):
                break
            await asyncio.sleep(0.01)
        assert all(conn.closed for conn in conns) and pool == []
        stream = await cli.EchoBidi()  # a new connection is dialled
        await stream.send(Request(message="again"))
        assert (await stream.recv()).message == "again"
        await stream.close_send()


async def test_stop_lets_open_streams_finish_and_refuses_new_ones() -> None:
    async with (
        asyncio.timeout(LIMIT),
        serve(server.with_exit_wait_time(5)) as (svr, _),
        connect(svr.address) as cli,
    ):
        stream = await cli.EchoBidi()
        await stream.send(Request(message="before"))
        assert (await stream.recv()).message == "before"
        stopping = asyncio.create_task(svr.stop())
        streams = svr._transport._ttstream  # the port's ttstream side
        for _ in range(500):  # bounded: stop() marks the ttstream side draining within a few loop turns
            if streams.draining:
                break
            await asyncio.sleep(0.01)
        assert streams.draining
        late = await cli.EchoBidi()
        with pytest.raises(ApplicationError, match="shutting down"):
            await late.recv()
        await stream.send(Request(message="during"))
        assert (await stream.recv()).message == "during"
        await stream.close_send()
        with pytest.raises(EOFError):
            await stream.recv()
        started = asyncio.get_running_loop().time()
        await stopping
        assert asyncio.get_running_loop().time() - started < 2  # not the whole exit wait
