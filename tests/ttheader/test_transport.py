"""The TTHeader / TTHeaderFramed / Framed transports end to end on loopback sockets."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import kitex_grpc
from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import callopt, client, metainfo, server
from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import (
    BizStatusError,
    GetConnectionError,
    InternalError,
    RemoteOrNetworkError,
    RPCTimeoutError,
    TApplicationType,
)
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.thrift import MissingResultError
from kitex_grpc.transport.ttheader.errors import ApplicationError
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder, encode
from tests.support import EchoService
from tests.ttheader.support import (
    Req,
    answer_each,
    connect,
    echo_thrift,
    read_frame,
    reply_bytes,
    scripted,
    serve,
)

ALL = ["ttheader", "ttheader_framed", "framed"]
WITH_HEADER = ["ttheader", "ttheader_framed"]


def pool_of(cli: Any) -> Any:
    return cli.client._transport.pool


@pytest.mark.parametrize("transport", ALL)
async def test_echo(transport: str) -> None:
    async with serve() as (svr, _), connect(svr.address, transport) as cli:
        reply = await cli.echo(Req(message="hello", payload=b"\x00\x01\xfe\xff", seq=42))
        assert (reply.message, reply.payload, reply.seq) == ("hello", b"\x00\x01\xfe\xff", 42)


@pytest.mark.parametrize("transport", ALL)
async def test_oneway_has_no_reply_and_its_connection_is_discarded(transport: str) -> None:
    async with serve() as (svr, handler), connect(svr.address, transport) as cli:
        assert await cli.notify(Req(message="n-1")) is None
        await asyncio.wait_for(handler.notified.wait(), 5)
        assert handler.last_notify == "n-1"
        assert pool_of(cli).global_idle == 0  # Kitex closes a connection used for one-way
        assert (await cli.echo(Req(message="last-notify"))).message == "n-1"


@pytest.mark.parametrize("transport", ALL)
async def test_idl_exception_is_raised_as_the_idl_class(transport: str) -> None:
    async with serve() as (svr, _), connect(svr.address, transport) as cli:
        with pytest.raises(echo_thrift.EchoError) as err:
            await cli.fail(Req(message="boom", seq=7))
        assert (err.value.code, err.value.message) == (7, "boom")
        assert (await cli.echo(Req(message="after"))).message == "after"  # connection kept


@pytest.mark.parametrize("transport", ALL)
async def test_plain_handler_error_is_tapplicationexception_6(transport: str) -> None:
    async with serve() as (svr, _), connect(svr.address, transport) as cli:
        with pytest.raises(ApplicationError) as err:
            await cli.echo(Req(message="error:boom"))
        assert err.value.type_id == TApplicationType.INTERNAL_ERROR and err.value.remote
        assert str(err.value) == "remote or network error[remote]: biz error: boom"
        assert isinstance(err.value, RemoteOrNetworkError)
        assert pool_of(cli).global_idle == 1  # an exception reply keeps the connection


@pytest.mark.parametrize("transport", WITH_HEADER)
async def test_biz_status_error_over_ttheader(transport: str) -> None:
    async with serve() as (svr, _), connect(svr.address, transport) as cli:
        with pytest.raises(BizStatusError) as biz:
            await cli.echo(Req(message="biz:1001:bad: thing"))
        assert (biz.value.code, biz.value.message, biz.value.extra) == (1001, "bad: thing", {"k": "v"})


async def test_biz_status_error_is_lost_over_framed() -> None:
    # Framed has nowhere to carry biz-status: the reply has an empty result (KITEX-WIRE.md §1.4).
    async with serve() as (svr, _), connect(svr.address, "framed") as cli:
        with pytest.raises(MissingResultError):
            await cli.echo(Req(message="biz:1001:bad"))


@pytest.mark.parametrize("transport", WITH_HEADER)
async def test_metainfo_both_ways_case_preserved(transport: str) -> None:
    async with serve() as (svr, _), connect(svr.address, transport) as cli:
        with (
            metainfo.with_value("temp", "t1"),
            metainfo.with_persistent_value("PERSIST_KEY", "p1"),
            metainfo.with_backward_values() as backward,
        ):
            reply = await cli.echo(Req(message="meta"))
        seen = json.loads(reply.message)
        assert seen["transient"] == {"temp": "t1"} and seen["persistent"] == {"PERSIST_KEY": "p1"}
        assert backward.received["backward-key"] == "backward-value"


async def test_framed_carries_no_metainfo() -> None:
    async with serve() as (svr, _), connect(svr.address, "framed") as cli:
        with metainfo.with_value("temp", "t1"), metainfo.with_backward_values() as backward:
            seen = json.loads((await cli.echo(Req(message="meta"))).message)
        assert seen == {"deadline_ms": -1, "persistent": {}, "transient": {}}
        assert backward.received == {}


@pytest.mark.parametrize("transport", WITH_HEADER)
async def test_explicit_rpc_timeout_becomes_the_server_deadline(transport: str) -> None:
    async with serve() as (svr, _), connect(svr.address, transport, client.with_rpc_timeout(5)) as cli:
        seen = json.loads((await cli.echo(Req(message="meta"))).message)
        assert 4000 < seen["deadline_ms"] <= 5000
        seen = json.loads((await cli.echo(Req(message="meta"), callopt.with_rpc_timeout(2))).message)
        assert 1000 < seen["deadline_ms"] <= 2000
    async with serve() as (svr, _), connect(svr.address, transport) as cli:
        assert json.loads((await cli.echo(Req(message="meta"))).message)["deadline_ms"] == -1


async def test_server_deadline_cancels_the_handler() -> None:
    async with serve() as (svr, _), connect(svr.address, "ttheader") as cli:
        with pytest.raises((RPCTimeoutError, ApplicationError)):
            await cli.echo(Req(message="sleep:2000"), callopt.with_rpc_timeout(0.1))


async def test_client_timeout_drops_the_connection_and_the_next_call_works() -> None:
    async with serve() as (svr, _), connect(svr.address, "ttheader_framed") as cli:
        with pytest.raises(RPCTimeoutError):
            await cli.echo(Req(message="sleep:1000"), callopt.with_rpc_timeout(0.1))
        assert pool_of(cli).global_idle == 0
        assert (await cli.echo(Req(message="ok"))).message == "ok"


async def test_caller_service_and_method_reach_the_server() -> None:
    async with (
        serve() as (svr, handler),
        connect(svr.address, "ttheader", client.with_client_basic_info("caller-svc")) as cli,
    ):
        await cli.echo(Req(message="x"))
        assert handler.callers == [("caller-svc", "")]


async def test_sequential_calls_reuse_one_connection_and_concurrent_calls_use_many() -> None:
    async with (
        serve() as (svr, handler),
        connect(svr.address, "ttheader", client.with_long_connection(max_idle_per_address=3)) as cli,
    ):
        for _ in range(5):
            await cli.echo(Req(message="x"))
        pool = pool_of(cli)
        assert pool.global_idle == 1
        calls = [asyncio.ensure_future(cli.echo(Req(message="gate"))) for _ in range(6)]
        await asyncio.wait_for(handler.entered.wait(), 5)
        handler.release.set()
        await asyncio.wait_for(asyncio.gather(*calls), 5)
        assert pool.global_idle == 3  # six connections were needed; three stay idle, three closed


async def test_protobuf_service_over_kitex_protobuf() -> None:
    async with (
        _pb_server() as address,
        _pb_client(address, "ttheader_framed") as framed,
        _pb_client(address, "ttheader") as forced,
        _pb_client(address, "framed") as bare,
    ):
        for cli in (framed, forced, bare):
            reply = await cli.Unary(echo_pb2.EchoRequest(message="pb", payload=b"\x01", seq=4))
            assert (reply.message, reply.payload, reply.seq) == ("pb", b"\x01", 4)
        with pytest.raises(BizStatusError) as biz:
            await framed.Unary(echo_pb2.EchoRequest(message="biz:1001:bad"))
        assert (biz.value.code, biz.value.extra) == (1001, {"k": "v"})
        with pytest.raises(ApplicationError, match="biz error: boom"):
            await framed.Unary(echo_pb2.EchoRequest(message="error:boom"))
        with pytest.raises(InternalError, match="cannot stream"):
            await framed.Bidi()


async def test_middlewares_see_args_and_result_structs() -> None:
    seen: list[str] = []

    def recorder(side: str) -> Callable[[Endpoint], Endpoint]:
        def mw(next_endpoint: Endpoint) -> Endpoint:
            async def call(ri: RPCInfo, request: Any) -> Any:
                response = await next_endpoint(ri, request)
                seen.append(f"{side}:{type(request).__name__}->{type(response).__name__}")
                return response

            return call

        return mw

    async with (
        serve(server.with_middleware(recorder("server"))) as (svr, _),
        connect(svr.address, "ttheader", client.with_middleware(recorder("client"))) as cli,
    ):
        assert (await cli.echo(Req(message="x"))).message == "x"
    assert seen == ["server:echo_args->echo_result", "client:echo_args->echo_result"]


async def test_connection_refused_is_get_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with connect(f"127.0.0.1:{port}", "ttheader") as cli:
        with pytest.raises(GetConnectionError):
            await cli.echo(Req(message="x"))


# -- against a scripted peer ---------------------------------------------------------------------------


async def test_request_carries_the_keys_a_kitex_client_sends() -> None:
    frames: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer_each(reader, writer, frames)

    async with scripted(script) as (address, _):
        async with connect(address, "ttheader", client.with_client_basic_info("me")) as cli:
            with metainfo.with_value("temp", "t1"):
                await cli.echo(Req(message="x"))
            await cli.echo(Req(message="x"), callopt.with_rpc_timeout(1.5))
        async with connect(address, "ttheader_framed") as cli:
            await cli.echo(Req(message="x"))
    decoder = MessageDecoder(Framing.TTHEADER, 1 << 20)
    first, second, third = (decoder.receive_data(f)[0] for f in frames)
    assert first.header is not None and second.header is not None and third.header is not None
    assert dict(first.header.int_info) == {1: "unframed", 3: "me", 6: "echo", 9: "echo", 20: "", 22: "1"}
    assert dict(first.header.str_info) == {"RPC_TRANSIT_temp": "t1", "isn": "Echo"}
    assert first.header.flags == 0 and first.header.seq_id == first.seq_id
    assert second.header.int_info[12] == "1500" and second.seq_id == first.seq_id + 1
    assert third.header.int_info[1] == "framed" and third.framing is Framing.TTHEADER_FRAMED


@pytest.mark.parametrize(
    ("kwargs", "type_id"),
    [
        ({"name": "other"}, TApplicationType.WRONG_METHOD_NAME),
        ({"seq_delta": 1}, TApplicationType.BAD_SEQUENCE_ID),
    ],
)
async def test_reply_name_and_seq_are_checked(kwargs: dict[str, Any], type_id: int) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(reply_bytes(await read_frame(reader), **kwargs))
        await reader.read()

    async with scripted(script) as (address, _), connect(address) as cli:
        with pytest.raises(ApplicationError) as err:
            await cli.echo(Req(message="x"))
        assert err.value.type_id == type_id


async def test_exception_reply_is_not_checked_for_name_or_seq() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        body = THRIFT.encode_exception("from a proxy", 6)
        writer.write(encode(Framing.TTHEADER, THRIFT, "x", 3, 0, body, {}, {22: "3"}))
        await reader.read()

    async with scripted(script) as (address, _), connect(address) as cli:
        with pytest.raises(ApplicationError, match="from a proxy"):
            await cli.echo(Req(message="x"))


async def test_crrst_from_the_server_drops_the_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer_each(reader, writer, crrst="1")

    async with scripted(script) as (address, conns), connect(address) as cli:
        await cli.echo(Req(message="x"))
        assert pool_of(cli).global_idle == 0
        await cli.echo(Req(message="x"))
        assert conns[0] == 2


# -- graceful shutdown ---------------------------------------------------------------------------------


async def test_graceful_stop_answers_in_flight_calls_with_crrst() -> None:
    async with serve() as (svr, handler), connect(svr.address, "ttheader") as cli:
        call = asyncio.ensure_future(cli.echo(Req(message="gate")))
        await asyncio.wait_for(handler.entered.wait(), 5)
        stopping = asyncio.ensure_future(svr.stop())
        await asyncio.sleep(0)
        assert not stopping.done()
        handler.release.set()
        assert (await asyncio.wait_for(call, 5)).message == "gate"
        await asyncio.wait_for(stopping, 5)
        assert pool_of(cli).global_idle == 0  # the reply carried crrst
        with pytest.raises(GetConnectionError):
            await cli.echo(Req(message="x"))


async def test_graceful_stop_gives_up_after_the_exit_wait_time() -> None:
    async with (
        serve(server.with_exit_wait_time(0.2)) as (svr, handler),
        connect(svr.address, "ttheader") as cli,
    ):
        call = asyncio.ensure_future(cli.echo(Req(message="gate")))
        await asyncio.wait_for(handler.entered.wait(), 5)
        await asyncio.wait_for(svr.stop(), 5)
        with pytest.raises(RemoteOrNetworkError):
            await asyncio.wait_for(call, 5)


# -- protobuf helpers ----------------------------------------------------------------------------------


@asynccontextmanager
async def _pb_server() -> AsyncIterator[str]:
    svr = echo_kitex.new_server(
        EchoService(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol("ttheader_framed"),
    )
    await svr.start()
    try:
        yield svr.address
    finally:
        await svr.stop()


@asynccontextmanager
async def _pb_client(address: str, transport: str) -> AsyncIterator[echo_kitex.EchoClient]:
    cli = echo_kitex.new_client(
        "echo",
        client.with_host_ports(address),
        client.with_transport_protocol(transport),
        client.with_connect_timeout(5),  # grpcio's first dial can exceed Kitex's 50 ms default
    )
    try:
        yield cli
    finally:
        await cli.close()


def test_kitex_grpc_exports_are_untouched() -> None:
    assert "thrift" not in kitex_grpc.__all__


@pytest.mark.parametrize("grpc_transport", ["grpc", "grpc_h2"])
async def test_grpc_and_kitex_protobuf_share_the_ttheader_port(grpc_transport: str) -> None:
    # HTTP/2 connections are detected and handed to the h2 transport (KITEX-WIRE.md §1.6).
    async with (
        _pb_server() as address,
        _pb_client(address, grpc_transport) as grpc_cli,
        _pb_client(address, "ttheader_framed") as kpb_cli,
    ):
        assert (await grpc_cli.Unary(echo_pb2.EchoRequest(message="h2"))).message == "h2"
        assert [r.seq async for r in grpc_cli.ServerStream(echo_pb2.EchoRequest(message="s", seq=3))] == [
            0,
            1,
            2,
        ]
        assert (await kpb_cli.Unary(echo_pb2.EchoRequest(message="kpb"))).message == "kpb"
        with pytest.raises(BizStatusError):
            await grpc_cli.Unary(echo_pb2.EchoRequest(message="biz:1001:bad"))
