"""The hot-path shortcuts of the TTHeader transports and their fallbacks.

* the server runs each request on a task of its own: contexts, order, current_task, timeouts and
  cancellation must hold;
* the header-info cache (identical header bytes parse once) and its bypass for large headers;
* per-shape routing on the server and the precomputed message encoders on both sides, which must
  produce exactly the bytes of the general encoder.
"""

from __future__ import annotations

import asyncio
import contextvars
import struct
from typing import Any

import pytest

from kitex_grpc import metainfo, rpcinfo
from kitex_grpc.codec.envelope import KITEX_PROTOBUF, THRIFT
from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol import ttheader as th
from kitex_grpc.protocol.thrift_message import encode_application_exception
from kitex_grpc.transport.ttheader.errors import ApplicationError
from kitex_grpc.transport.ttheader.wire import (
    Framing,
    MessageDecoder,
    MessageEncoder,
    encode,
    encode_with_info,
    header_info,
)
from tests.ttheader.support import ECHO_INFO, Reply, Req, ThriftEcho, connect, open_raw, read_frame, serve

_seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="")


class ProbingEcho(ThriftEcho):
    """Records what each request sees of its context and task; suspends on ``wait:<ms>``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, bool]] = []
        self.cancelled = asyncio.Event()
        self.hanging = asyncio.Event()

    async def echo(self, req: Any) -> Any:
        msg = req.message or ""
        before = _seen.get()
        _seen.set(msg)  # must never leak into the next request's context
        task = asyncio.current_task()
        self.seen.append((msg, before, task is not None))
        if msg.startswith("wait:"):
            # asyncio.timeout needs a current task; it also checks that the task resuming us is that one
            async with asyncio.timeout(5):
                await asyncio.sleep(int(msg[5:]) / 1000)
        elif msg == "timeout":
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(5)
            except TimeoutError:
                return Reply(message="timed-out")
        elif msg == "group":
            async with asyncio.TaskGroup() as group:
                child = group.create_task(asyncio.sleep(0, "child"))
            return Reply(message=child.result())
        elif msg == "gate":
            self.entered.set()
            await self.release.wait()
        elif msg == "hang":
            self.hanging.set()
            try:
                await asyncio.Event().wait()  # until the server cancels it
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        assert rpcinfo.current() is not None and _seen.get() == msg
        return Reply(message=msg, seq=req.seq)


def _request(message: str, seq: int, framing: Framing = Framing.TTHEADER) -> bytes:
    method = ECHO_INFO.methods["echo"]
    body = method.serialize_request(method.pack_request(Req(message=message, seq=seq)))
    if framing.has_header:
        return encode(framing, THRIFT, "echo", 1, seq, body, {"isn": "Echo"}, {22: "1"})
    return encode(framing, THRIFT, "echo", 1, seq, body)


async def _replies(reader: asyncio.StreamReader, count: int, framing: Framing) -> list[Any]:
    decoder = MessageDecoder(framing, 1 << 20)
    method = ECHO_INFO.methods["echo"]
    out = []
    for _ in range(count):
        (msg,) = decoder.receive_data(await read_frame(reader))
        assert msg.msg_type == 2, msg
        out.append((msg.seq_id, method.deserialize_response(msg.body).success.message))
    return out


@pytest.mark.parametrize("framing", [Framing.FRAMED])
async def test_pipelined_requests_mixing_eager_and_suspended_stay_in_order(framing: Framing) -> None:
    handler = ProbingEcho()
    async with serve(handler=handler) as (svr, _):
        reader, writer = await open_raw(svr.address)
        names = ["a", "wait:20", "b", "wait:1", "c", "timeout", "group", "d"]
        writer.write(b"".join(_request(n, i + 1, framing) for i, n in enumerate(names)))
        replies = await _replies(reader, len(names), framing)
        writer.close()
    expect = [
        n if n not in ("timeout", "group") else {"timeout": "timed-out", "group": "child"}[n] for n in names
    ]
    assert replies == [(i + 1, m) for i, m in enumerate(expect)]
    # every request saw a fresh context (nothing set by the one before) and had a current task
    assert [(n, before, has_task) for n, before, has_task in handler.seen] == [(n, "", True) for n in names]


async def test_pipelined_ttheader_requests_run_concurrently_and_are_matched_by_seq_id() -> None:
    # Over TTHeader (Kitex's mux server) a suspended request does not hold up those behind it.
    handler = ProbingEcho()
    async with serve(handler=handler) as (svr, _):
        reader, writer = await open_raw(svr.address)
        names = ["gate", "a", "wait:1", "b", "timeout", "group", "d"]
        writer.write(b"".join(_request(n, i + 1) for i, n in enumerate(names)))
        replies = await _replies(reader, len(names) - 1, Framing.TTHEADER)  # all but the gated one
        assert handler.entered.is_set()
        handler.release.set()
        replies += await _replies(reader, 1, Framing.TTHEADER)
        writer.close()
    expect = {"timeout": "timed-out", "group": "child"}
    assert sorted(replies[:-1]) == [(i + 1, expect.get(n, n)) for i, n in enumerate(names) if n != "gate"]
    assert replies[-1] == (1, "gate")
    assert sorted(handler.seen) == sorted((n, "", True) for n in names)


async def test_a_suspended_ttheader_request_keeps_its_own_task_and_context() -> None:
    # Two suspended requests on one connection at once: each is resumed by a task of its own, and
    # the eager request after them reuses neither's context.
    handler = ProbingEcho()
    async with serve(handler=handler) as (svr, _):
        reader, writer = await open_raw(svr.address)
        names = ["wait:30", "wait:10", "x"]
        writer.write(b"".join(_request(n, i + 1) for i, n in enumerate(names)))
        replies = await _replies(reader, 3, Framing.TTHEADER)
        writer.close()
    assert sorted(replies) == [(1, "wait:30"), (2, "wait:10"), (3, "x")]
    assert replies[0] == (3, "x")
    assert sorted(handler.seen) == sorted((n, "", True) for n in names)


async def test_eager_requests_on_many_connections_do_not_share_contexts() -> None:
    handler = ProbingEcho()
    async with serve(handler=handler) as (svr, _), connect(svr.address, "ttheader") as cli:
        got = await asyncio.gather(*(cli.echo(Req(message=f"m{i}", seq=i)) for i in range(40)))
        assert [r.message for r in got] == [f"m{i}" for i in range(40)]
        assert all(before == "" and has_task for _, before, has_task in handler.seen)


async def test_a_suspended_request_is_cancelled_when_the_server_gives_up() -> None:
    from kitex_grpc import server

    handler = ProbingEcho()
    async with serve(server.with_exit_wait_time(0.2), handler=handler) as (svr, _):
        _, writer = await open_raw(svr.address)
        writer.write(_request("hang", 7))
        await asyncio.wait_for(handler.hanging.wait(), 5)
        assert handler.seen[-1][0] == "hang"
        await svr.stop()
        await asyncio.wait_for(handler.cancelled.wait(), 5)
        writer.close()


async def test_handler_error_after_suspending_is_an_exception_reply() -> None:
    async with serve() as (svr, _), connect(svr.address, "ttheader") as cli:
        assert (await cli.echo(Req(message="sleep:5"))).message == "sleep:5"
        with pytest.raises(ApplicationError) as info:
            await cli.echo(Req(message="error:boom"))
        assert info.value.type_id == 6 and "boom" in str(info.value)
        assert (await cli.echo(Req(message="again"))).message == "again"


# -- header-info cache -------------------------------------------------------------------------------


def test_identical_header_bytes_share_one_parsed_info() -> None:
    frame = th.encode_frame(th.TTHeader(seq_id=1, str_info={"isn": "Echo"}, int_info={22: "1"}), b"p")
    other = th.encode_frame(th.TTHeader(seq_id=2, str_info={"isn": "Echo"}, int_info={22: "1"}), b"q")
    parts = th.TTHeaderFrameDecoder().receive_parts(frame + other)
    assert [(flags, seq, payload) for flags, seq, _, payload in parts] == [(0, 1, b"p"), (0, 2, b"q")]
    assert parts[0][2] is parts[1][2]
    info = parts[0][2]
    assert dict(info.str_info) == {"isn": "Echo"} and dict(info.int_info) == {22: "1"}
    with pytest.raises(TypeError):
        info.str_info["x"] = "y"  # type: ignore[index]
    # the Frame API still sees whole headers with their own seq ids
    frames = th.TTHeaderFrameDecoder().receive_data(frame + other)
    assert [f.header.seq_id for f in frames] == [1, 2]
    assert frames[1].header == th.TTHeader(seq_id=2, str_info={"isn": "Echo"}, int_info={22: "1"})


def test_large_headers_bypass_the_cache_and_decode_the_same() -> None:
    big = {"RPC_TRANSIT_k": "v" * (th.INFO_CACHE_MAX_BYTES + 10), "isn": "Echo"}
    frame = th.encode_frame(th.TTHeader(seq_id=3, str_info=big), b"")
    first = th.TTHeaderFrameDecoder().receive_parts(frame)[0][2]
    second = th.TTHeaderFrameDecoder().receive_parts(frame)[0][2]
    assert first is not second and dict(first.str_info) == big == dict(second.str_info)
    assert th.decode_frame(frame) == (th.TTHeader(seq_id=3, str_info=big), b"")


def test_the_cache_starts_afresh_when_full_and_bad_areas_are_never_cached() -> None:
    for i in range(th.INFO_CACHE_SIZE + 5):
        th.decode_header_info(header_info({"k": str(i)}, {}))
    assert len(th._INFO_CACHE) <= th.INFO_CACHE_SIZE
    bad = bytes((0, 0, 0x99, 0))
    for _ in range(2):
        with pytest.raises(ProtocolError, match="invalid infoIDType"):
            th.decode_header_info(bad)
    assert bad not in th._INFO_CACHE


# -- precomputed encoders ------------------------------------------------------------------------------


# Kitex Protobuf is always framed, so it has no TTHEADER (unframed) or BUFFERED combination.
_ENCODER_CASES = [
    (framing, envelope)
    for framing in Framing
    for envelope in (THRIFT, KITEX_PROTOBUF)
    if not (envelope is KITEX_PROTOBUF and framing in (Framing.TTHEADER, Framing.BUFFERED))
]


@pytest.mark.parametrize(("framing", "envelope"), _ENCODER_CASES)
@pytest.mark.parametrize("seq_id", [1, -7, 0x7FFFFFFF])
def test_message_encoder_writes_the_bytes_of_the_general_encoder(
    framing: Framing, envelope: Any, seq_id: int
) -> None:
    strs, ints = {"isn": "Echo"}, {22: "2", 3: "svc"}
    info = header_info(strs, ints)
    body = b"\x0b\x00\x01\x00\x00\x00\x02hi\x00"  # one struct: BUFFERED walks it
    got = MessageEncoder(framing, envelope, "echo", 2, info).encode(seq_id, body)
    if framing.has_header:
        assert got == encode(framing, envelope, "echo", 2, seq_id, body, strs, ints)
        assert got == encode_with_info(framing, envelope, "echo", 2, seq_id, body, info)
    else:
        assert got == encode(framing, envelope, "echo", 2, seq_id, body)
    (msg,) = MessageDecoder(framing, 1 << 20).receive_data(got)
    assert (msg.method, msg.msg_type, msg.seq_id, msg.body, msg.envelope) == (
        "echo",
        2,
        seq_id,
        body,
        envelope,
    )


def test_message_encoder_refuses_what_the_general_encoder_refuses() -> None:
    with pytest.raises(ProtocolError, match="empty method name"):
        MessageEncoder(Framing.TTHEADER, THRIFT, "", 2, header_info({}, {}))


async def test_client_header_is_cached_only_without_metainfo_and_matches_a_fresh_encode() -> None:
    async with serve() as (svr, _), connect(svr.address, "ttheader") as cli:
        transport = cli.client._transport
        assert (await cli.echo(Req(message="one"))).message == "one"
        cached = len(transport._encoders)
        assert cached == 1
        assert (await cli.echo(Req(message="two"))).message == "two"
        assert len(transport._encoders) == cached
        with metainfo.with_value("tkey", "tvalue"):
            reply = await cli.echo(Req(message="meta"))
        assert '"tkey": "tvalue"' in reply.message
        assert len(transport._encoders) == cached  # a header with metainfo is never cached


async def test_exception_replies_do_not_use_the_reply_encoder() -> None:
    async with serve() as (svr, _):
        reader, writer = await open_raw(svr.address)
        writer.write(_request("error:bad", 9))
        (msg,) = MessageDecoder(Framing.TTHEADER, 1 << 20).receive_data(await read_frame(reader))
        writer.close()
    assert msg.msg_type == 3 and msg.seq_id == 9 and dict(msg.int_info) == {22: "3"}
    assert msg.body.startswith(encode_application_exception("biz error: bad", 6)[:3])


# -- messages parsed in place from the receive buffer ---------------------------------------------------


def _general(payload: bytes, framing: Framing) -> tuple[Any, ...] | str:
    """What the general (copying) decoder makes of one message payload, or its error."""
    from kitex_grpc.transport.ttheader import wire

    try:
        if framing is Framing.FRAMED:
            msg = wire.decode_framed(payload)
        else:
            msg = wire.decode_ttheader_payload(th.TTHeader(seq_id=5), payload)
    except ProtocolError as exc:
        return exc.detail
    return (msg.method, msg.msg_type, msg.seq_id, msg.body, msg.envelope, msg.framing)


_HEADS = [
    b"\x80\x01\x00\x01\x00\x00\x00\x04echo\x00\x00\x00\x07",  # the usual request
    b"\x80\x01\x00\x03\x00\x00\x00\x00\x00\x00\x00\x07",  # EXCEPTION without a name: accepted
    b"\x80\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x07",  # CALL without a name: refused
    b"\x80\x01\x00\x01\xff\xff\xff\xfe",  # negative name length
    b"\x80\x01\x00\x01\x00\x00\x00\x09echo",  # name longer than the message
    b"\x80\x01\x00\x02\x00\x00\x00\x02\xff\xfe\x00\x00\x00\x01",  # undecodable name bytes
    b"\x80\x02\x00\x01\x00\x00\x00\x01e\x00\x00\x00\x01",  # bad version
    b"\x80\x01",  # short
    b"\x00\x00\x00\x08\x80\x01\x00\x01\x00\x00\x00\x01e\x00\x00\x00\x01",  # framed inside
]


@pytest.mark.parametrize("framing", [Framing.FRAMED, Framing.TTHEADER])
@pytest.mark.parametrize("head", _HEADS)
@pytest.mark.parametrize("body", [b"", b"\x00", b"\x0b\x00\x01\x00\x00\x00\x02hi\x00"])
def test_in_place_parse_gives_what_the_general_decoder_gives(
    framing: Framing, head: bytes, body: bytes
) -> None:
    payload = head + body
    expected = _general(payload, framing)
    if framing is Framing.FRAMED:
        data = struct.pack(">I", len(payload)) + payload
    else:
        data = th.encode_frame(th.TTHeader(seq_id=5), payload)
    # Whole, and a byte at a time from a reused buffer (what the receive buffer hands over).
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        decoder = MessageDecoder(framing, 1 << 20)
        scratch = bytearray(len(data))
        got: list[Any] = []
        try:
            for chunk in chunks:
                scratch[: len(chunk)] = chunk
                with memoryview(scratch) as view:
                    got.extend(decoder.receive_data(view[: len(chunk)]))
                scratch[:] = b"\xee" * len(scratch)  # a kept view would now see garbage
        except ProtocolError as exc:
            assert exc.detail == expected
            continue
        (msg,) = got
        assert (msg.method, msg.msg_type, msg.seq_id, msg.body, msg.envelope, msg.framing) == expected


@pytest.mark.parametrize("framing", [Framing.FRAMED, Framing.TTHEADER])
def test_a_message_that_fails_to_parse_fails_the_stream(framing: Framing) -> None:
    bad = b"\x80\x02\x00\x01\x00\x00\x00\x01e\x00\x00\x00\x01"  # bad version: no message at all
    good = b"\x80\x01\x00\x01\x00\x00\x00\x04echo\x00\x00\x00\x07"
    frame = (
        (lambda p: struct.pack(">I", len(p)) + p)
        if framing is Framing.FRAMED
        else (lambda p: th.encode_frame(th.TTHeader(seq_id=1), p))
    )
    decoder = MessageDecoder(framing, 1 << 20)
    with pytest.raises(ProtocolError):
        decoder.receive_data(frame(good) + frame(bad) + frame(good))
    assert decoder.buffered == 0
    with pytest.raises(ProtocolError, match="decoder already failed"):
        decoder.receive_data(frame(good))
