"""The ttstream server against hand-written frames: bad input, and what it does beyond Kitex.

Bad input (KITEX-WIRE-2.md §11.1-11.3): a frame of an unknown type closes the connection; frames for
an unknown stream id, Data before the Header included, are ignored; a struct that does not decode ends
its stream with an exception; a flood of opened streams is answered stream by stream. The server
serves on after each. Beyond Kitex: an unknown method gets an answer, int key 28 bounds the handler,
and a stream's receive queue is bounded with backpressure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kitex_grpc import server
from kitex_grpc.codec import thrift as thrift_codec
from kitex_grpc.protocol.ttheader import HeaderFlags, ProtocolID, TTHeader, encode_frame
from kitex_grpc.protocol.ttstream import (
    FrameType,
    StreamFrame,
    StreamFrameDecoder,
    decode_exception_payload,
    encode_stream_frame,
)
from kitex_grpc.transport.ttstream.config import TTStreamConfig
from tests.ttstream.support import Request, Response, serve

LIMIT = 10.0
_encode = thrift_codec.serializer(Request)
_decode = thrift_codec.deserializer(Response)


def header(sid: int, method: str = "EchoBidi", service: str = "StreamService", ints: Any = None) -> bytes:
    return encode_stream_frame(FrameType.HEADER, sid, method, b"", {"isn": service}, ints)


def data(sid: int, message: str, method: str = "EchoBidi") -> bytes:
    return encode_stream_frame(FrameType.DATA, sid, method, _encode(Request(message=message)))


def trailer(sid: int, method: str = "EchoBidi") -> bytes:
    return encode_stream_frame(FrameType.TRAILER, sid, method)


class Raw:
    """A bare TCP client that writes bytes and reads ttstream frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = StreamFrameDecoder()
        self.frames: list[StreamFrame] = []

    async def send(self, *chunks: bytes) -> None:
        self.writer.write(b"".join(chunks))
        await self.writer.drain()

    async def frame(self, sid: int | None = None) -> StreamFrame:
        """The next frame (of stream ``sid`` if given; others are kept in ``frames``)."""
        while True:
            for i, f in enumerate(self.frames):
                if sid is None or f.sid == sid:
                    return self.frames.pop(i)
            chunk = await self.reader.read(65536)
            if not chunk:
                raise EOFError
            self.frames.extend(self.decoder.receive_data(chunk))

    async def until_trailer(self, sid: int) -> tuple[list[str], StreamFrame]:
        """The messages of stream ``sid`` up to its Trailer, and the Trailer."""
        messages = []
        while True:
            f = await self.frame(sid)
            if f.type is FrameType.DATA:
                messages.append(_decode(f.payload).message)
            elif f.type is FrameType.TRAILER:
                return messages, f

    async def closed(self) -> bool:
        return await self.reader.read() == b""


@asynccontextmanager
async def raw(address: str) -> AsyncIterator[Raw]:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield Raw(reader, writer)
    finally:
        writer.close()


async def echo_works(address: str) -> None:
    async with raw(address) as c:
        await c.send(header(1), data(1, "alive"), trailer(1))
        messages, end = await c.until_trailer(1)
        assert (messages, end.payload) == (["alive"], b"")


async def test_a_wrong_frame_type_closes_the_connection_only() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _):
        async with raw(svr.address) as c:
            await c.send(header(1))
            bad = encode_frame(
                TTHeader(
                    flags=HeaderFlags.STREAMING,
                    seq_id=1,
                    protocol_id=ProtocolID.THRIFT_STRUCT,
                    int_info={27: "9", 9: "EchoBidi"},
                ),
                b"",
            )
            await c.send(bad)
            assert await c.closed()
        await echo_works(svr.address)


async def test_frames_for_an_unknown_stream_id_are_ignored() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), raw(svr.address) as c:
        await c.send(header(1), data(77, "ghost"), trailer(77))
        await c.send(encode_stream_frame(FrameType.RST, 78, "EchoBidi"))
        await c.send(data(1, "real"), trailer(1))
        messages, end = await c.until_trailer(1)
        assert (messages, end.payload) == (["real"], b"")
        assert c.frames == []  # nothing was answered for 77 or 78


async def test_data_before_the_header_is_dropped_and_the_stream_then_works() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), raw(svr.address) as c:
        await c.send(data(5, "early"), header(5), data(5, "late"), trailer(5))
        messages, end = await c.until_trailer(5)
        assert (messages, end.payload) == (["late"], b"")


async def test_a_truncated_struct_ends_its_stream_with_an_exception() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), raw(svr.address) as c:
        body = _encode(Request(message="hello"))[:-3]
        await c.send(header(3), encode_stream_frame(FrameType.DATA, 3, "EchoBidi", body))
        messages, end = await c.until_trailer(3)
        assert messages == []
        text, type_id = decode_exception_payload(end.payload)
        assert type_id == 7 and "cannot decode" in text, (text, type_id)
        await c.send(header(4), data(4, "after"), trailer(4))  # the connection serves on
        assert (await c.until_trailer(4))[0] == ["after"]


async def test_a_flood_of_opened_streams_is_refused_past_the_limit() -> None:
    config = server.with_ttheader_streaming_options(TTStreamConfig(max_streams=8))
    async with asyncio.timeout(LIMIT), serve(config) as (svr, _), raw(svr.address) as c:
        await c.send(*(header(sid) for sid in range(1, 1001)))
        refused = []
        for sid in range(9, 1001):
            _, end = await c.until_trailer(sid)
            refused.append(decode_exception_payload(end.payload))
        assert set(refused) == {("too many open streams on one connection (max 8)", 6)}
        for sid in range(1, 9):  # the first 8 are served
            await c.send(data(sid, f"s{sid}"), trailer(sid))
            assert (await c.until_trailer(sid))[0] == [f"s{sid}"]
        await c.send(header(2000), data(2000, "again"), trailer(2000))  # room again
        assert (await c.until_trailer(2000))[0] == ["again"]


async def test_an_unknown_method_or_service_gets_an_exception_trailer() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), raw(svr.address) as c:
        await c.send(header(1, method="Nope"))
        _, end = await c.until_trailer(1)
        assert decode_exception_payload(end.payload) == ("unknown method Nope", 1)
        await c.send(header(2, method="Nope", service="NoService"))
        _, end = await c.until_trailer(2)
        assert decode_exception_payload(end.payload) == ("unknown service NoService", 20)
        # An unknown service name with a known method is served (Kitex SearchService, strict=false).
        await c.send(header(3, service="Other"), data(3, "found"), trailer(3))
        assert (await c.until_trailer(3))[0] == ["found"]
        await c.send(header(4, method="Echo"))  # a ping-pong method has no stream
        _, end = await c.until_trailer(4)
        assert decode_exception_payload(end.payload) == ("method Echo is not a streaming method", 1)


async def test_int_key_28_bounds_the_handler() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, handler), raw(svr.address) as c:
        await c.send(header(1, ints={28: "200"}), data(1, "block"))
        _, end = await c.until_trailer(1)
        text, type_id = decode_exception_payload(end.payload)
        assert type_id == 12015 and "stream timeout" in text
        assert handler.cancelled.is_set()


async def test_a_full_receive_queue_stops_reading_the_connection() -> None:
    config = server.with_ttheader_streaming_options(TTStreamConfig(recv_queue_size=4))
    # A paused connection does not see its peer go away: the stop's exit wait closes it.
    quick = server.with_exit_wait_time(0.5)
    async with asyncio.timeout(LIMIT), serve(config, quick) as (svr, handler), raw(svr.address) as c:
        await c.send(header(1), data(1, "block"))  # the handler stops reading requests
        await handler.entered.wait()
        chunk = data(1, "x" * 4096) * 256  # 1 MiB of requests at a time, 32 MiB in all
        for _ in range(32):
            c.writer.write(chunk)
        conn = next(iter(svr._transport._ttstream.connections))  # type: ignore[union-attr]
        for _ in range(1000):  # bounded: the server stops reading once the queue holds 4
            if conn._reading_paused:
                break
            await asyncio.sleep(0.005)
        assert conn._reading_paused
        # The queue holds its 4, plus what the read that filled it carried (asyncio reads at most
        # 256 KiB: under 64 of these frames); unbounded, it would take in all 8192.
        assert 4 <= len(conn.streams[1]._queue) < 4 + 64
        assert c.writer.transport.get_write_buffer_size() > 0  # TCP pushes back on the sender
        c.writer.transport.abort()


async def test_a_header_without_a_method_is_answered_not_raised() -> None:
    # Found by mutating frames: the exception's message name cannot be empty in Thrift.
    async with asyncio.timeout(LIMIT), serve() as (svr, _), raw(svr.address) as c:
        await c.send(header(1, method=""))
        _, end = await c.until_trailer(1)
        assert decode_exception_payload(end.payload) == ("unknown method ", 1)
        await c.send(header(2), data(2, "still"), trailer(2))
        assert (await c.until_trailer(2))[0] == ["still"]


async def test_streams_open_at_the_clients_eof_still_answer_then_the_connection_closes() -> None:
    async with asyncio.timeout(LIMIT), serve() as (svr, _), raw(svr.address) as c:
        await c.send(header(1), data(1, "whole"), trailer(1), header(3), data(3, "cut"))
        c.writer.write_eof()  # stream 1 is complete; stream 3 never gets its Trailer
        messages, end = await c.until_trailer(1)
        assert (messages, end.payload) == (["whole"], b"")
        messages, end = await c.until_trailer(3)
        assert messages == ["cut"]
        text, type_id = decode_exception_payload(end.payload)
        assert "connection closed" in text and type_id != 0
        assert await c.closed()


async def test_an_rst_in_the_same_read_as_its_header_frees_the_stream() -> None:
    # Found by fuzzing: the handler's task was cancelled before its first step, and the stream stayed.
    rst = encode_stream_frame(FrameType.RST, 1, "EchoBidi")
    async with asyncio.timeout(LIMIT), serve() as (svr, _), raw(svr.address) as c:
        await c.send(header(1) + rst + header(2) + data(2, "next") + trailer(2))
        assert (await c.until_trailer(2))[0] == ["next"]
        conn = next(iter(svr._transport._ttstream.connections))  # type: ignore[union-attr]
        assert list(conn.streams) == []
