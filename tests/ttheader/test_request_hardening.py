"""Requests the TTHeader server must answer whatever sits next to them (issue 23, findings 9 and 10).

- Int key 12 (RPC timeout) that is no timeout Kitex would apply (310 digits, beyond int64, not a
  number, 0 or less): the request is served without a deadline, as a Kitex server ignores it.
- Good requests in the same read as a malformed frame: each is answered, then the connection closes
  for the bad bytes (TTHeader, Framed and Buffered).

Raw sockets against a real server on 127.0.0.1; every read is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct

import pytest

from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.protocol.ttheader import IntKey
from kitex_grpc.transport.ttheader.wire import Framing, Message, MessageDecoder, encode
from tests.ttheader.support import ECHO_INFO, Req, connect, open_raw, read_to_eof, serve

LOGGER = "kitex_grpc.transport.ttheader"
ECHO = ECHO_INFO.methods["echo"]


def request(message: str, seq: int, framing: Framing = Framing.TTHEADER, **int_info: str) -> bytes:
    assert ECHO.pack_request is not None
    body = ECHO.serialize_request(ECHO.pack_request(Req(message=message, seq=seq)))
    ints = {int(IntKey[k.upper()]): v for k, v in int_info.items()}
    return encode(framing, THRIFT, "echo", 1, seq, body, {}, ints)


def replies(data: bytes, framing: Framing = Framing.TTHEADER) -> list[Message]:
    decoder = MessageDecoder(framing, 1 << 20)
    out = decoder.receive_data(data)
    assert decoder.buffered == 0
    return out


def reply_message(msg: Message) -> str:
    assert msg.msg_type == 2, msg.envelope.decode_exception(msg.body)
    result = ECHO.deserialize_response(msg.body)
    text: str = getattr(result, "message", None) or result.success.message
    return text


@pytest.mark.parametrize(
    "key12",
    [
        "9" * 310,
        "9" * 320,
        "9" * 5000,
        "9223372036854775808",
        "-9223372036854775809",
        "12ab",
        "1_000",
        " 5",
        "0",
        "-5",
    ],
    ids=[
        "310-digits",
        "320-digits",
        "5000-digits",
        "int64-max+1",
        "int64-min-1",
        "not-a-number",
        "underscore",
        "space",
        "zero",
        "negative",
    ],
)
async def test_a_timeout_key_kitex_would_ignore_is_ignored(key12: str) -> None:
    async with serve() as (svr, _):
        reader, writer = await open_raw(svr.address)
        try:
            writer.write(request("meta", 7, rpc_timeout=key12) + request("after", 8))
            await writer.drain()
            got = []
            decoder = MessageDecoder(Framing.TTHEADER, 1 << 20)
            while len(got) < 2:
                chunk = await read_to_eof_or_some(reader)
                assert chunk, "the server closed without answering"
                got += decoder.receive_data(chunk)
        finally:
            writer.close()
        assert [m.seq_id for m in got] == [7, 8]
        assert json.loads(reply_message(got[0]))["deadline_ms"] == -1  # served without a deadline
        assert reply_message(got[1]) == "after"


async def test_a_valid_timeout_key_still_sets_the_deadline() -> None:
    async with serve() as (svr, _):
        reader, writer = await open_raw(svr.address)
        try:
            writer.write(request("meta", 3, rpc_timeout="+3000"))
            decoder = MessageDecoder(Framing.TTHEADER, 1 << 20)
            got: list[Message] = []
            while not got:
                chunk = await read_to_eof_or_some(reader)
                assert chunk
                got += decoder.receive_data(chunk)
        finally:
            writer.close()
        assert 2000 < json.loads(reply_message(got[0]))["deadline_ms"] <= 3000


async def read_to_eof_or_some(reader: asyncio.StreamReader) -> bytes:
    """What the server sends next (b"" once it closed); fails the test after 5 s."""
    return await asyncio.wait_for(reader.read(1 << 16), 5)


BAD_TTHEADER = struct.pack(">IHHiH", 20, 0x1000, 0, 9, 0) + bytes(10)  # header size 0: invalid
BAD_FRAMED = struct.pack(">II", 12, 0x12345678) + bytes(8)  # not a Thrift message
BAD_BUFFERED = struct.pack(">I", 0x12345678) + bytes(12)  # not a strict Thrift message header
BAD = {Framing.TTHEADER: BAD_TTHEADER, Framing.FRAMED: BAD_FRAMED, Framing.BUFFERED: BAD_BUFFERED}


@pytest.mark.parametrize("framing", list(BAD), ids=lambda f: f.name)
async def test_good_requests_before_a_bad_frame_in_one_read_are_answered(
    framing: Framing, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    bad = BAD[framing]
    # sleep:20 suspends the second request: the close waits for every good one to be answered.
    messages = ["one", "sleep:20", "three"]
    data = b"".join(request(m, i + 1, framing) for i, m in enumerate(messages)) + bad
    async with serve() as (svr, _):
        reader, writer = await open_raw(svr.address)
        try:
            writer.write(data)  # one write: the server reads it in one go
            answered = await read_to_eof(reader)  # then the server closes
        finally:
            writer.close()
        got = replies(answered, framing)
        # Over TTHeader a suspended request is answered when it ends (seq ids match the replies).
        assert sorted((m.seq_id, reply_message(m)) for m in got) == [
            (1, "one"),
            (2, "sleep:20"),
            (3, "three"),
        ]
        assert "undecodable" in caplog.text
        async with connect(svr.address, "ttheader") as cli:  # the server serves on
            assert (await cli.echo(Req(message="still up"))).message == "still up"
