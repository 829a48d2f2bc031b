"""What the server does with bad bytes, one case per test; after each, it still serves others."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

import kitex_grpc
from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.errors import TApplicationType
from kitex_grpc.protocol.ttheader import TTHeader, encode_frame
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder, encode
from tests.ttheader.support import ECHO_INFO, Req, connect, open_raw, read_frame, read_to_eof, serve

LOGGER = "kitex_grpc.transport.ttheader"


def echo_body(message: str = "x") -> bytes:
    method = ECHO_INFO.methods["echo"]
    assert method.pack_request is not None
    return method.serialize_request(method.pack_request(Req(message=message)))


@asynccontextmanager
async def served() -> AsyncIterator[kitex_grpc.Server]:
    async with serve() as (svr, _):
        yield svr
        # The server keeps serving other connections after each bad one.
        async with connect(svr.address, "ttheader") as cli:
            assert (await cli.echo(Req(message="still up"))).message == "still up"


async def send_and_read_all(address: str, data: bytes) -> bytes:
    reader, writer = await open_raw(address)
    writer.write(data)
    try:
        return await read_to_eof(reader)
    finally:
        writer.close()


def decode_reply(
    data: bytes, framing: Framing = Framing.TTHEADER
) -> tuple[str, int, str, int, dict[str, str]]:
    [msg] = MessageDecoder(framing, 1 << 20).receive_data(data)
    text, type_id = msg.envelope.decode_exception(msg.body)
    info = dict(msg.header.str_info) if msg.header is not None else {}
    return msg.method, msg.msg_type, text, type_id, info


async def test_bad_magic_closes_without_reply(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    async with served() as svr:
        assert await send_and_read_all(svr.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    assert "invalid payload (first4Bytes=0x47455420" in caplog.text


async def test_oversize_ttheader_frame_closes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    async with served() as svr:
        head = struct.pack(">IHHiH", 0x3FFF0000, 0x1000, 0, 1, 1)
        assert await send_and_read_all(svr.address, head) == b""
    assert "exceeds the limit" in caplog.text


async def test_oversize_framed_frame_closes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    async with served() as svr:
        assert await send_and_read_all(svr.address, struct.pack(">II", 0x3FFF0000, 0x80010001)) == b""
    assert "framed: frame length" in caplog.text


async def test_truncated_frame_then_eof_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    async with served() as svr:
        frame = encode(Framing.TTHEADER, THRIFT, "echo", 1, 1, echo_body())
        reader, writer = await open_raw(svr.address)
        writer.write(frame[:-3])
        writer.write_eof()
        assert await read_to_eof(reader) == b""
        writer.close()
    assert "ended inside a message (" in caplog.text


async def test_garbage_header_info_closes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    async with served() as svr:
        payload = encode(Framing.BUFFERED, THRIFT, "echo", 1, 1, echo_body())
        info = b"\x00\x00\x42\x00"  # protocol 0, no transforms, info id 0x42: invalid
        frame = struct.pack(">IHHiH", 10 + len(info) + len(payload), 0x1000, 0, 1, 1) + info + payload
        assert await send_and_read_all(svr.address, frame) == b""
    assert "invalid infoIDType[0x42]" in caplog.text


async def test_garbage_struct_gets_protocol_error_reply_with_crrst(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    async with served() as svr:
        frame = encode(Framing.TTHEADER, THRIFT, "echo", 1, 5, b"\x0c\x00\x01\x0b\x00\x01\xff\xff", {}, {})
        name, msg_type, text, type_id, info = decode_reply(await send_and_read_all(svr.address, frame))
        assert (name, msg_type, type_id, info) == ("echo", 3, TApplicationType.PROTOCOL_ERROR, {"crrst": "1"})
        assert "decode echo request" in text
    assert "closing the connection" in caplog.text


@pytest.mark.parametrize("framing", [Framing.TTHEADER, Framing.FRAMED])
async def test_a_struct_that_runs_past_its_message_is_refused(framing: Framing) -> None:
    # A string declared 4096 bytes long with 2 present: thriftpy2 alone would fill it from memory and
    # the echo handler would send that memory back.
    body = b"\x0c\x00\x01\x0b\x00\x01\x00\x00\x10\x00ab"
    async with served() as svr:
        if framing.has_header:
            frame = encode(framing, THRIFT, "echo", 1, 6, body, {}, {})
        else:
            frame = encode(framing, THRIFT, "echo", 1, 6, body)
        reply = await send_and_read_all(svr.address, frame)
        name, msg_type, text, type_id, str_info = decode_reply(reply, framing)
        assert (name, msg_type, type_id) == ("echo", 3, TApplicationType.PROTOCOL_ERROR)
        assert "a declared size runs past the end of the body" in text
        assert str_info == ({"crrst": "1"} if framing.has_header else {})


@pytest.mark.parametrize("framing", [Framing.TTHEADER, Framing.FRAMED])
async def test_a_body_declaring_a_huge_container_is_refused_at_once(framing: Framing) -> None:
    # args{1: EchoRequest{99: list of 2**31-1 elements of type STOP}}: thriftpy2's reader alone loops
    # over them, reading nothing, for seconds, and every other connection waits (the reply is read
    # within 5 s, and `served` then checks another connection).
    body = b"\x0c\x00\x01" + b"\x0f\x00\x63" + b"\x00\x7f\xff\xff\xff" + b"\x00\x00"
    async with served() as svr:
        if framing.has_header:
            frame = encode(framing, THRIFT, "echo", 1, 7, body, {}, {})
        else:
            frame = encode(framing, THRIFT, "echo", 1, 7, body)
        name, msg_type, text, type_id, _ = decode_reply(await send_and_read_all(svr.address, frame), framing)
        assert (name, msg_type, type_id) == ("echo", 3, TApplicationType.PROTOCOL_ERROR)
        assert "decode echo request" in text and "unknown data type 0" in text


async def test_unknown_method_over_ttheader_is_type_1_then_close() -> None:
    async with served() as svr:
        frame = encode(Framing.TTHEADER, THRIFT, "nope", 1, 5, b"\x00", {"isn": "Echo"}, {})
        reply = await send_and_read_all(svr.address, frame)
        assert decode_reply(reply) == ("nope", 3, "unknown method nope (service Echo)", 1, {"crrst": "1"})


async def test_unknown_service_over_ttheader_is_type_20() -> None:
    async with served() as svr:
        frame = encode(Framing.TTHEADER, THRIFT, "nope", 1, 5, echo_body(), {"isn": "Nope"}, {})
        reply = await send_and_read_all(svr.address, frame)
        assert decode_reply(reply) == ("nope", 3, "unknown service Nope, method nope", 20, {"crrst": "1"})


async def test_an_unknown_service_name_with_a_known_method_is_served_as_kitex_does() -> None:
    # Kitex SearchService(isn, method, strict=false): the only service with the method serves it.
    async with served() as svr:
        frame = encode(Framing.TTHEADER, THRIFT, "echo", 1, 5, echo_body("routed"), {"isn": "Nope"}, {})
        reader, writer = await open_raw(svr.address)
        try:
            writer.write(frame)
            [msg] = MessageDecoder(Framing.TTHEADER, 1 << 20).receive_data(await read_frame(reader))
        finally:
            writer.close()
        assert (msg.method, msg.msg_type, msg.seq_id) == ("echo", 2, 5)
        method = ECHO_INFO.methods["echo"]
        assert method.unpack_response is not None
        assert method.unpack_response(method.deserialize_response(msg.body)).message == "routed"


async def test_unknown_method_over_framed_is_type_20() -> None:
    async with served() as svr:
        frame = encode(Framing.FRAMED, THRIFT, "nope", 1, 5, b"\x00")
        reply = await send_and_read_all(svr.address, frame)
        assert decode_reply(reply, Framing.FRAMED) == ("nope", 3, "unknown service , method nope", 20, {})


async def test_buffered_request_is_answered_buffered() -> None:
    async with served() as svr:
        reader, writer = await open_raw(svr.address)
        writer.write(encode(Framing.BUFFERED, THRIFT, "echo", 1, 9, echo_body("buffered")))
        head = await asyncio.wait_for(reader.readexactly(4), 5)
        assert head == b"\x80\x01\x00\x02"  # a REPLY, not a frame length
        writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with served() as svr:
        reader, writer = await open_raw(svr.address)
        writer.write(
            b"".join(encode(Framing.FRAMED, THRIFT, "echo", 1, s, echo_body(str(s))) for s in (1, 2, 3))
        )
        seqs = [
            MessageDecoder(Framing.FRAMED, 1 << 20).receive_data(await read_frame(reader))[0].seq_id
            for _ in range(3)
        ]
        assert seqs == [1, 2, 3]
        writer.close()


async def test_a_stalled_client_does_not_block_others() -> None:
    async with served() as svr:
        _reader, writer = await open_raw(svr.address)
        frame = encode(Framing.TTHEADER, THRIFT, "echo", 1, 1, echo_body())
        writer.write(frame[:20])  # and never the rest
        async with connect(svr.address, "ttheader") as cli:
            assert (await cli.echo(Req(message="other"))).message == "other"
        writer.close()


async def test_a_vanished_client_does_not_block_others() -> None:
    async with serve() as (svr, handler):
        _reader, writer = await open_raw(svr.address)
        writer.write(encode(Framing.TTHEADER, THRIFT, "echo", 1, 1, echo_body("gate")))
        await asyncio.wait_for(handler.entered.wait(), 5)
        writer.close()
        async with connect(svr.address, "framed") as cli:
            assert (await cli.echo(Req(message="other"))).message == "other"
        handler.release.set()


async def test_ttheader_streaming_without_a_frame_type_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The connection goes to the ttstream server (tests/ttstream), which closes it: no FrameType key.
    caplog.set_level(logging.WARNING, LOGGER)
    async with served() as svr:
        frame = encode_frame(TTHeader(flags=0x0002, seq_id=1), b"")
        assert await send_and_read_all(svr.address, frame) == b""
    assert "ttstream: unexpected frame type None" in caplog.text


async def test_a_flood_of_bad_connections_is_logged_a_few_lines_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    async with served() as svr:
        payload = encode(Framing.BUFFERED, THRIFT, "echo", 1, 1, echo_body())
        info = b"\x00\x00\x42\x00"  # an invalid info id: the server closes each connection
        frame = struct.pack(">IHHiH", 10 + len(info) + len(payload), 0x1000, 0, 1, 1) + info + payload
        for _ in range(200):
            assert await send_and_read_all(svr.address, frame) == b""
    # The first is logged at once, the rest counted into one line per second: never one per connection.
    closing = [r for r in caplog.records if "closing the connection" in r.getMessage()]
    assert 1 <= len(closing) <= 4, [r.getMessage() for r in closing]
