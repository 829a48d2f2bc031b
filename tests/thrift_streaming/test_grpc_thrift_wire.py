"""Thrift over gRPC on the wire (KITEX-WIRE-2.md §12): what our clients send (content-type
``application/grpc+thrift`` on either client transport, the Args wrapper for unary, bare structs on
streams) and what our servers answer (the Result wrapper with the IDL exception and status 0, bare
structs, the content-type echoed), checked against raw HTTP/2 peers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kitex_grpc.transport_protocol import TransportProtocol
from tests.h2.helpers import RawH2, grpc_frame
from tests.thrift_streaming.raw_peer import raw_grpc_peer
from tests.thrift_streaming.support import INFO, Reply, Req, StreamError, new_client, serving, stream_thrift

GRPC = TransportProtocol.GRPC
H2 = TransportProtocol.GRPC_H2
ECHO = INFO.methods["Echo"]
BIDI = INFO.methods["EchoBidi"]
# Req{message:"hi"} as a bare struct; the Args wrapper puts it in field 1 (0c 0001 ... 00)
HI = bytes.fromhex("0b0001000000026869") + b"\x00"
HI_ARGS = bytes.fromhex("0c0001") + HI + b"\x00"


@pytest.mark.parametrize("protocol", [GRPC, H2], ids=["grpc", "grpc_h2"])
async def test_client_sends_grpc_thrift_with_args_for_unary(protocol: TransportProtocol) -> None:
    # grpc-core always writes content-type application/grpc, which a Kitex server reads as protobuf;
    # a Thrift client configured for GRPC therefore goes through the h2 transport
    result = ECHO.serialize_response(stream_thrift.StreamService.Echo_result(success=Reply(message="ok")))
    async with raw_grpc_peer([result]) as peer, new_client(peer.address, protocol) as cli:
        assert await cli.Echo(Req(message="hi")) == Reply(message="ok")
    (rec,) = peer.streams
    assert rec.headers[b"content-type"] == b"application/grpc+thrift"
    assert rec.headers[b":path"] == b"/StreamService/Echo"
    assert rec.messages() == [HI_ARGS]


@pytest.mark.parametrize("protocol", [GRPC, H2], ids=["grpc", "grpc_h2"])
async def test_client_sends_bare_structs_on_a_stream(protocol: TransportProtocol) -> None:
    reply = BIDI.serialize_response(Reply(seq=5))
    assert reply == bytes.fromhex("0a00030000000000000005") + b"\x00"
    async with raw_grpc_peer([reply, reply]) as peer, new_client(peer.address, protocol) as cli:
        bidi = await cli.EchoBidi()
        await bidi.send(Req(message="hi"))
        await bidi.send(Req(message="hi"))
        await bidi.close_send()
        async with asyncio.timeout(5):
            assert [r async for r in bidi] == [Reply(seq=5), Reply(seq=5)]
    (rec,) = peer.streams
    assert rec.headers[b"content-type"] == b"application/grpc+thrift"
    assert rec.messages() == [HI, HI] and rec.ended


@pytest.mark.parametrize("protocol", [GRPC, H2], ids=["grpcio", "h2"])
async def test_server_answers_idl_exception_inside_the_result_with_status_0(
    protocol: TransportProtocol,
) -> None:
    async with serving(protocol) as (svr, _):
        raw = await RawH2.open(svr.address)
        try:
            sid = raw.request("/stream.StreamService/Echo", b"application/grpc+thrift")
            args = ECHO.pack_request(Req(message="exception:9:no"))
            raw.conn.send_data(sid, grpc_frame(ECHO.serialize_request(args)), end_stream=True)
            await raw.flush()
            await raw.until(lambda _evs: raw.ended(sid))
            headers = raw.headers(sid)
            body = b"".join(e.data for e in raw.events if getattr(e, "data", None) is not None)
        finally:
            raw.close()
    assert headers[b"grpc-status"] == b"0"
    # grpc-core answers application/grpc whatever the request said; the h2 server echoes it (as Kitex)
    expected = b"application/grpc+thrift" if protocol is H2 else b"application/grpc"
    assert headers[b"content-type"] == expected
    result = ECHO.deserialize_response(body[5:])
    assert result.success is None and isinstance(result.err, StreamError)
    assert (result.err.code, result.err.message) == (9, "no")


@pytest.mark.parametrize("protocol", [GRPC, H2], ids=["grpcio", "h2"])
async def test_server_reads_and_writes_bare_structs_on_a_stream(protocol: TransportProtocol) -> None:
    async with serving(protocol) as (svr, handler):
        raw = await RawH2.open(svr.address)
        try:
            sid = raw.request("/stream.StreamService/EchoBidi", b"application/grpc+thrift")
            raw.conn.send_data(
                sid, grpc_frame(BIDI.serialize_request(Req(message="hi", seq=3))), end_stream=True
            )
            await raw.flush()
            await raw.until(lambda _evs: raw.ended(sid))
            headers = raw.headers(sid)
            body = b"".join(e.data for e in raw.events if getattr(e, "data", None) is not None)
        finally:
            raw.close()
    assert headers[b"grpc-status"] == b"0"
    assert handler.received == [Req(message="hi", seq=3)]
    first = int.from_bytes(body[1:5], "big")
    messages: list[Any] = [body[5 : 5 + first], body[10 + first :]]
    assert [BIDI.deserialize_response(m) for m in messages] == [
        Reply(message="hi", seq=3),
        Reply(message="eof", seq=1),
    ]
