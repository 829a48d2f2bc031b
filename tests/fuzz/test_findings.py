"""Regression tests for what tests/fuzz/test_live.py found, each the shrunk input on a live server."""

from __future__ import annotations

import logging

import pytest

from kitex_grpc.codec.envelope import KITEX_PROTOBUF
from kitex_grpc.errors import TApplicationType
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder, encode
from tests.ttheader.support import open_raw, read_to_eof, serve


@pytest.mark.parametrize("framing", [Framing.FRAMED, Framing.TTHEADER_FRAMED])
async def test_kitex_protobuf_call_with_a_non_utf8_method_name_gets_its_exception_reply(
    framing: Framing, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by the live fuzz run: the method name is read with surrogateescape, the UNKNOWN_SERVICE text
    # quotes it, and ErrorProto.Message (a proto3 string) refused the lone surrogate: the server logged
    # "request on ... failed" at ERROR, never answered, and left the connection open.
    caplog.set_level(logging.WARNING, "kitex_grpc")
    frame = encode(framing, KITEX_PROTOBUF, "echX", 1, 9, b"", *([{}, {}] if framing.has_header else []))
    frame = frame.replace(b"echX", b"ech\xff")
    async with serve() as (svr, _):
        reader, writer = await open_raw(svr.address)
        writer.write(frame)
        reply = await read_to_eof(reader)
        writer.close()
    [msg] = MessageDecoder(framing, 1 << 20).receive_data(reply)
    text, type_id = msg.envelope.decode_exception(msg.body)
    assert msg.envelope is KITEX_PROTOBUF and (msg.method, msg.seq_id) == ("ech\udcff", 9)
    assert type_id == TApplicationType.UNKNOWN_SERVICE and "method ech\ufffd" in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
