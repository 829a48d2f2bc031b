"""Thrift streaming over gRPC (``application/grpc+thrift``) with real Go Kitex v0.16.3, both ways: code
generated without -streamx (interop/cmd/streamserver, streamclient; idl/stream.thrift). Ping-pong and
"unary" with Args/Result, streams of 0, 1 and 10,000 bare structs, half-close from each side, an IDL
exception and a biz error at the end, a handler error mid-stream, client cancel, client timeout,
metainfo, unknown method (issue 27 item 5; KITEX-WIRE-2.md §12)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kitex_grpc import callopt, metainfo
from kitex_grpc.errors import BizStatusError, CanceledError, RemoteOrNetworkError, RPCTimeoutError
from kitex_grpc.serviceinfo import ServiceInfo
from kitex_grpc.status import StatusCode
from kitex_grpc.transport_protocol import TransportProtocol
from tests.interop.thrift_stream_peer import GoStreamServer, go_stream_server, run_stream_client
from tests.thrift_streaming.support import (
    INFO,
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
SERVERS = [H2, GRPC, TransportProtocol.TTHEADER]  # TTHEADER: HTTP/2 detected on the shared port
SERVER_IDS = ["h2", "grpcio", "ttheaderport"]
PAYLOAD = "AAEC/v8="  # Go's JSON of the bytes 00 01 02 fe ff


async def go_calls(
    kitex_bin: Path, protocol: TransportProtocol, *cases: str, info: ServiceInfo = INFO, cancels: bool = False
) -> tuple[dict[str, Any], StreamHandler]:
    """Serve StreamService (``info``) over ``protocol`` and run the Go stream client's ``cases`` on it.

    With ``cancels``, wait (bounded) while still serving until a handler was cancelled.
    """
    handler = StreamHandler()
    async with serving(protocol, handler=handler, info=info) as (svr, _):
        got = await run_stream_client(kitex_bin, svr.address, *cases)
        if cancels:
            async with asyncio.timeout(5):
                await handler.cancelled.wait()
        return got, handler


def no_error(line: dict[str, Any]) -> Any:
    assert line["error"] is None, line
    return line["result"]


# -- Go client -> Python server ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", SERVERS, ids=SERVER_IDS)
async def test_go_client_unary_args_result_and_errors(kitex_bin: Path, protocol: TransportProtocol) -> None:
    cases = ("echo", "echo_unary", "echo_exception", "echo_unary_exception", "echo_biz", "echo_error")
    got, _ = await go_calls(kitex_bin, protocol, *cases)
    for case in ("echo", "echo_unary"):
        assert no_error(got[case]) == {"message": "hi", "payload": PAYLOAD, "seq": 42}
    for case in ("echo_exception", "echo_unary_exception"):
        # the IDL exception came inside the Result with status 0: Go raises the typed StreamError
        assert got[case]["exception"] == {"code": 7, "message": "bad input"}
        assert got[case]["grpc_code"] is None
    biz = got["echo_biz"]
    assert (biz["biz_code"], biz["biz_message"], biz["biz_extra"]) == (1001, "bad thing", {"k": "v"})
    assert got["echo_error"]["grpc_code"] == 13
    assert got["echo_error"]["error"].endswith("desc = boom [biz error]")


@pytest.mark.parametrize("protocol", SERVERS, ids=SERVER_IDS)
async def test_go_client_streams_of_0_1_and_10000_with_half_close(
    kitex_bin: Path, protocol: TransportProtocol
) -> None:
    cases = [f"{kind}_{n}" for kind in ("server", "client", "bidi") for n in (0, 1, 10000)]
    got, _ = await go_calls(kitex_bin, protocol, *cases)
    for n in (0, 1, 10000):
        assert no_error(got[f"server_{n}"]) == {"count": n, "in_order": True}
        client = no_error(got[f"client_{n}"])
        assert client["seq"] == n
        assert client["message"] == ("m" if n == 1 else "" if n == 0 else f"{2 * n - 1} bytes")
        # the Go client half-closes after n messages; our server still sends its "eof" reply after that
        bidi = no_error(got[f"bidi_{n}"])
        assert bidi == {"count": n, "in_order": True, "last": "eof", "last_seq": n, "send_error": None}


@pytest.mark.parametrize("protocol", SERVERS, ids=SERVER_IDS)
async def test_go_client_sees_errors_at_the_end_and_mid_stream(
    kitex_bin: Path, protocol: TransportProtocol
) -> None:
    cases = ("server_biz_end", "server_exception_end", "client_biz_end", "bidi_error_mid", "bidi_server_stop")
    got, _ = await go_calls(kitex_bin, protocol, *cases)
    biz = got["server_biz_end"]
    assert biz["result"] == {"count": 2, "in_order": True}  # both replies, then the error
    assert (biz["biz_code"], biz["biz_message"], biz["biz_extra"], biz["grpc_code"]) == (
        1002,
        "late",
        {"k": "v"},
        13,
    )
    exc = got["server_exception_end"]
    assert exc["result"] == {"count": 2, "in_order": True} and exc["exception"] is None
    assert exc["grpc_code"] == 13 and exc["error"].endswith("StreamError(code=3, message='nope') [biz error]")
    assert got["client_biz_end"]["biz_code"] == 1003
    mid = got["bidi_error_mid"]
    assert mid["result"]["first"]["seq"] == 1
    assert (mid["grpc_code"], mid["error"]) == (13, "rpc error: code = 13 desc = boom [biz error]")
    # the server ends the stream while the client has not half-closed: the client's Recv sees io.EOF
    assert no_error(got["bidi_server_stop"]) == {
        "first": {"message": "one", "payload": "", "seq": 1},
        "eof": True,
    }


@pytest.mark.parametrize("protocol", SERVERS, ids=SERVER_IDS)
@pytest.mark.parametrize(("case", "code"), [("bidi_cancel", 1), ("bidi_timeout", 4)])
async def test_go_client_cancel_and_timeout_reach_our_handler(
    kitex_bin: Path, protocol: TransportProtocol, case: str, code: int
) -> None:
    # grpc.aio answers read() with EOF for a stream the client reset and cancels the handler's task
    # only a moment later, so on the grpcio server a handler blocked in recv may first see a clean
    # half-close (checked: a raw RST_STREAM CANCEL after one message, 20 of 20 times); the handler is
    # checked on the servers that surface the reset at once
    cancels = protocol is not GRPC or case == "bidi_timeout"
    got, _ = await go_calls(kitex_bin, protocol, case, cancels=cancels)  # the handler was cancelled
    assert got[case]["grpc_code"] == code


@pytest.mark.parametrize("protocol", SERVERS, ids=SERVER_IDS)
async def test_go_client_metainfo_reaches_unary_and_stream_handlers(
    kitex_bin: Path, protocol: TransportProtocol
) -> None:
    got, _ = await go_calls(kitex_bin, protocol, "meta")
    result = no_error(got["meta"])
    for kind in ("unary", "stream"):
        meta = json.loads(result[kind])
        assert (meta["transient"], meta["persistent"]) == ({"TK": "tv"}, {"PK": "pv"})
        assert 0 < meta["deadline_ms"] <= 20_000  # the Go client's 20 s ctx deadline, as grpc-timeout


@pytest.mark.parametrize("protocol", SERVERS, ids=SERVER_IDS)
async def test_go_client_unknown_method(kitex_bin: Path, protocol: TransportProtocol) -> None:
    without_bidi = ServiceInfo(
        INFO.service_name,
        [m for m in INFO.methods.values() if m.name != "EchoBidi"],
        payload_codec=INFO.payload_codec,
    )
    got, _ = await go_calls(kitex_bin, protocol, "unknown_method", info=without_bidi)
    # ours answers 12 UNIMPLEMENTED as gRPC does; a Kitex server answers 1 (KITEX-WIRE.md §3)
    assert got["unknown_method"]["grpc_code"] == StatusCode.UNIMPLEMENTED.value


# -- Python client -> Go server ---------------------------------------------------------------------------

CLIENTS = [GRPC, H2]
RST_CANCEL = (
    "rpc error: code = 1 desc = transport: RSTStream Frame received with error code: CANCEL [triggered by ]"
)
CLIENT_IDS = ["grpc", "grpc_h2"]


@pytest.fixture(scope="module")
def go_server(kitex_bin: Path) -> Any:
    with go_stream_server(kitex_bin) as server:
        yield server


@pytest.mark.parametrize("protocol", CLIENTS, ids=CLIENT_IDS)
async def test_go_server_unary_args_result_and_errors(
    go_server: GoStreamServer, protocol: TransportProtocol
) -> None:
    async with new_client(go_server.address, protocol) as cli:
        assert await cli.Echo(Req(message="hi", payload=b"\x01", seq=1)) == Reply(
            message="hi", payload=b"\x01", seq=1
        )
        assert await cli.EchoUnary(Req(message="u")) == Reply(message="u", payload=b"", seq=0)
        for method in (cli.Echo, cli.EchoUnary):
            with pytest.raises(StreamError) as exc_info:
                await method(Req(message="exception:7:bad input"))
            assert (exc_info.value.code, exc_info.value.message) == (7, "bad input")
            with pytest.raises(BizStatusError) as biz_info:
                await method(Req(message="biz:1001:bad thing"))
            assert (biz_info.value.code, biz_info.value.message, biz_info.value.extra) == (
                1001,
                "bad thing",
                {"k": "v"},
            )
            with pytest.raises(RemoteOrNetworkError) as err_info:
                await method(Req(message="error:boom"))
            assert err_info.value.grpc_status is StatusCode.INTERNAL and "boom [biz error]" in str(
                err_info.value
            )


@pytest.mark.parametrize("protocol", CLIENTS, ids=CLIENT_IDS)
@pytest.mark.parametrize("count", [0, 1, 10_000])
async def test_go_server_streams_of_0_1_and_10000_with_half_close(
    go_server: GoStreamServer, protocol: TransportProtocol, count: int
) -> None:
    async with new_client(go_server.address, protocol) as cli, asyncio.timeout(60):
        assert [r.seq async for r in cli.EchoServer(Req(message="s", count=count))] == list(range(count))
        upload = await cli.EchoClient()
        for i in range(count):
            await upload.send(Req(message="m", seq=i))
        reply = await upload.close_and_recv()
        assert (reply.seq, len(reply.message)) == (count, max(2 * count - 1, 0))
        bidi = await cli.EchoBidi()

        async def sender() -> None:
            for i in range(count):
                await bidi.send(Req(message="b", seq=i))
            await bidi.close_send()  # half-close: the Go handler sees io.EOF and still sends "eof"

        task = asyncio.create_task(sender())
        replies = [r async for r in bidi]
        await task
        assert [r.seq for r in replies] == [*range(count), count] and replies[-1].message == "eof"


@pytest.mark.parametrize("protocol", CLIENTS, ids=CLIENT_IDS)
async def test_go_server_errors_at_the_end_and_mid_stream(
    go_server: GoStreamServer, protocol: TransportProtocol
) -> None:
    async with new_client(go_server.address, protocol) as cli:
        seqs: list[int] = []
        with pytest.raises(BizStatusError) as biz_info:
            async for r in cli.EchoServer(Req(message="biz:1002:late", count=2)):
                seqs.append(r.seq)
        assert seqs == [0, 1] and (biz_info.value.code, biz_info.value.extra) == (1002, {"k": "v"})
        seqs = []
        with pytest.raises(RemoteOrNetworkError) as err_info:
            async for r in cli.EchoServer(Req(message="exception:3:nope", count=2)):
                seqs.append(r.seq)
        # an IDL exception on a stream: a plain handler error, its text Go's %v of the struct
        assert seqs == [0, 1] and err_info.value.grpc_status is StatusCode.INTERNAL
        assert "StreamError({Code:3 Message:nope}) [biz error]" in str(err_info.value)
        bidi = await cli.EchoBidi()
        await bidi.send(Req(message="one", seq=1))
        assert (await bidi.recv()).seq == 1
        await bidi.send(Req(message="error:boom"))
        with pytest.raises(RemoteOrNetworkError) as mid_info:
            await bidi.recv()
        assert mid_info.value.grpc_status is StatusCode.INTERNAL and "boom [biz error]" in str(mid_info.value)
        # the Go handler returns first (the server's half of the close): our recv ends cleanly
        bidi = await cli.EchoBidi()
        await bidi.send(Req(message="one", seq=1))
        assert (await bidi.recv()).seq == 1
        await bidi.send(Req(message="stop"))
        with pytest.raises(EOFError):
            await bidi.recv()


@pytest.mark.parametrize("protocol", CLIENTS, ids=CLIENT_IDS)
async def test_go_server_handler_sees_our_cancel_and_timeout(
    go_server: GoStreamServer, protocol: TransportProtocol
) -> None:
    async with new_client(go_server.address, protocol) as cli:
        bidi = await cli.EchoBidi()
        await bidi.send(Req(message="one", seq=1))
        assert (await bidi.recv()).seq == 1
        await bidi.send(Req(message="block"))
        bidi.cancel()
        with pytest.raises(CanceledError):
            await bidi.recv()
        detail = await asyncio.to_thread(go_server.wait_event, "EchoBidi", "cancelled")
        assert detail == RST_CANCEL
        call = cli.EchoServer(Req(message="block", count=1), callopt.with_rpc_timeout(0.3))
        assert (await call.recv()).seq == 0
        with pytest.raises((RPCTimeoutError, RemoteOrNetworkError)) as timeout_info:
            await call.recv()
        # Kitex's handler returns ctx.Err() when the deadline passes, answered as status 13 "[biz error]":
        # that races our own deadline (KITEX-WIRE-2.md §11.15), so either may end the call
        if isinstance(timeout_info.value, RemoteOrNetworkError):
            assert timeout_info.value.grpc_status is StatusCode.INTERNAL
            assert "context deadline exceeded [biz error]" in str(timeout_info.value)
        detail = await asyncio.to_thread(go_server.wait_event, "EchoServer", "cancelled")
        # the deadline travelled as grpc-timeout; our client resets the stream when it passes, so the
        # Go handler's ctx ends by whichever of the two it sees first
        assert detail in ("context deadline exceeded", RST_CANCEL)


@pytest.mark.parametrize("protocol", CLIENTS, ids=CLIENT_IDS)
async def test_go_server_metainfo_on_unary_and_stream(
    go_server: GoStreamServer, protocol: TransportProtocol
) -> None:
    async with new_client(go_server.address, protocol) as cli:
        with metainfo.with_value("tk", "tv"), metainfo.with_persistent_value("pk", "pv"):
            unary = json.loads((await cli.Echo(Req(message="meta"))).message)
            streamed = [json.loads(r.message) async for r in cli.EchoServer(Req(message="meta"))]
    for got in (unary, *streamed):
        assert got == {"deadline_ms": -1, "persistent": {"PK": "pv"}, "transient": {"TK": "tv"}}


@pytest.mark.parametrize("protocol", CLIENTS, ids=CLIENT_IDS)
async def test_go_server_unknown_method_is_status_1(
    go_server: GoStreamServer, protocol: TransportProtocol
) -> None:
    async with new_client(go_server.address, protocol, info=with_missing_method()) as cli:
        bidi = await cli.Missing()
        with pytest.raises(CanceledError) as info:
            await bidi.recv()
    # Kitex answers an unknown method with grpc-status 1 (TransError UnknownMethod), KITEX-WIRE.md §3
    assert info.value.grpc_status is StatusCode.CANCELLED and "unknown method Missing" in str(info.value)


# -- the bytes, against raw HTTP/2 peers --------------------------------------------------------------------

ECHO = INFO.methods["Echo"]
BIDI = INFO.methods["EchoBidi"]


async def test_go_client_bytes_on_the_wire(kitex_bin: Path) -> None:
    from tests.thrift_streaming.raw_peer import raw_grpc_peer

    result = ECHO.serialize_response(ECHO.response_type(success=Reply(message="ok")))
    async with raw_grpc_peer([result]) as peer:
        got = await run_stream_client(kitex_bin, peer.address, "echo")
    assert no_error(got["echo"]) == {"message": "ok", "payload": None, "seq": 0}
    (rec,) = peer.streams
    assert rec.headers[b"content-type"] == b"application/grpc+thrift"
    assert rec.headers[b":path"] == b"/echostream.StreamService/Echo"  # <pkg> = the Go package
    assert rec.headers[b":authority"] == b"stream"  # the destination service name
    (message,) = rec.messages()
    # the Args wrapper (field 1: req), no message envelope; Kitex's FastCodec writes the fixed-size fields
    # first (seq, count, then message, payload) and zero values too
    assert message.startswith(bytes.fromhex("0c0001" + "0a0003000000000000002a" + "080004" + "00000000"))
    args = ECHO.deserialize_request(message)
    assert args.req == Req(message="hi", payload=b"\x00\x01\x02\xfe\xff", seq=42, count=0)

    reply = BIDI.serialize_response(Reply(message="eof", seq=1))
    async with raw_grpc_peer([reply]) as peer:
        got = await run_stream_client(kitex_bin, peer.address, "bidi_1")
    assert no_error(got["bidi_1"])["last"] == "eof"
    (rec,) = peer.streams
    assert rec.headers[b":path"] == b"/echostream.StreamService/EchoBidi"
    (message,) = rec.messages()
    assert message.startswith(bytes.fromhex("0a0003"))  # a bare struct: its first field, no wrapper
    assert BIDI.deserialize_request(message) == Req(message="b", payload=b"", seq=0, count=0)


async def test_go_server_bytes_on_the_wire(go_server: GoStreamServer) -> None:
    from tests.h2.helpers import RawH2, grpc_frame

    raw = await RawH2.open(go_server.address)
    try:
        sid = raw.request("/StreamService/Echo", b"application/grpc+thrift")
        args = ECHO.pack_request(Req(message="exception:9:no"))
        raw.conn.send_data(sid, grpc_frame(ECHO.serialize_request(args)), end_stream=True)
        bidi = raw.request("/StreamService/EchoBidi", b"application/grpc+thrift")
        raw.conn.send_data(
            bidi, grpc_frame(BIDI.serialize_request(Req(message="hi", seq=3))), end_stream=True
        )
        await raw.flush()
        await raw.until(lambda _evs: raw.ended(sid) and raw.ended(bidi), seconds=10)
    finally:
        raw.close()

    def body(stream_id: int) -> bytes:
        return b"".join(
            e.data for e in raw.events if getattr(e, "stream_id", None) == stream_id and hasattr(e, "data")
        )

    headers = raw.headers(sid)
    assert headers[b"grpc-status"] == b"0" and headers[b"content-type"] == b"application/grpc+thrift"
    data = body(sid)
    result = ECHO.deserialize_response(data[5:])  # one message: the Result with the IDL exception
    assert int.from_bytes(data[1:5], "big") == len(data) - 5
    assert result.success is None and (result.err.code, result.err.message) == (9, "no")
    assert raw.headers(bidi)[b"grpc-status"] == b"0"
    data = body(bidi)
    first = int.from_bytes(data[1:5], "big")
    replies = [BIDI.deserialize_response(data[5 : 5 + first]), BIDI.deserialize_response(data[10 + first :])]
    # Kitex writes every default-requiredness field, zero values too: payload b"" rather than absent
    assert replies == [Reply(message="hi", payload=b"", seq=3), Reply(message="eof", payload=b"", seq=1)]
