"""The ttstream client against a hand-written server: the ends a Kitex server never sends, and bad ones.

Each test's server reads the client's Header (and what follows) and answers with the frames under test;
the client's own frames are recorded to check what it sends back (§11.7-11.9).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from kitex_grpc import client
from kitex_grpc.codec import thrift as thrift_codec
from kitex_grpc.errors import CanceledError, ProtocolError, RemoteOrNetworkError
from kitex_grpc.protocol.ttstream import (
    FrameType,
    StreamFrame,
    StreamFrameDecoder,
    decode_exception_payload,
    encode_exception_payload,
    encode_stream_frame,
)
from tests.ttstream.support import Request, Response, connect

LIMIT = 10.0
_reply = thrift_codec.serializer(Response)

Script = Callable[[StreamFrame, Callable[[bytes], None]], None]


class Peer:
    def __init__(self) -> None:
        self.received: list[StreamFrame] = []
        self.rst = asyncio.Event()


@asynccontextmanager
async def peer(script: Script) -> AsyncIterator[tuple[str, Peer]]:
    """A server that calls ``script(frame, write)`` for every frame a client sends."""
    state = Peer()
    writers: list[asyncio.StreamWriter] = []

    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.append(writer)
        decoder = StreamFrameDecoder()
        while chunk := await reader.read(65536):
            for frame in decoder.receive_data(chunk):
                state.received.append(frame)
                if frame.type is FrameType.RST:
                    state.rst.set()
                script(frame, writer.write)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        yield f"{host}:{port}", state
    finally:
        # Nothing is left for the garbage collector to finalise (pending tasks, open transports).
        server.close()
        for writer in writers:
            writer.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def frame(kind: FrameType, sid: int, payload: bytes = b"", strs: dict[str, str] | None = None) -> bytes:
    return encode_stream_frame(kind, sid, "EchoBidi", payload, strs)


def answer_header_with(*extra: Callable[[int], bytes]) -> Script:
    def script(f: StreamFrame, write: Callable[[bytes], None]) -> None:
        if f.type is FrameType.HEADER:
            write(frame(FrameType.HEADER, f.sid) + b"".join(make(f.sid) for make in extra))

    return script


def data(message: str) -> Callable[[int], bytes]:
    return lambda sid: frame(FrameType.DATA, sid, _reply(Response(message=message)))


async def test_an_rst_from_the_server_side_cancels_after_the_data_before_it() -> None:
    def rst(sid: int) -> bytes:
        return frame(FrameType.RST, sid, encode_exception_payload("EchoBidi", sid, "proxy gave up", 12009))

    async with (
        asyncio.timeout(LIMIT),
        peer(answer_header_with(data("a"), rst)) as (address, _),
        connect(address) as cli,
    ):
        stream = await cli.EchoBidi()
        assert (await stream.recv()).message == "a"
        with pytest.raises(CanceledError, match="proxy gave up"):
            await stream.recv()


async def test_a_second_header_ends_the_stream_with_an_rst_12002() -> None:
    again = lambda sid: frame(FrameType.HEADER, sid)  # noqa: E731
    async with (
        asyncio.timeout(LIMIT),
        peer(answer_header_with(again)) as (address, state),
        connect(address) as cli,
    ):
        stream = await cli.EchoBidi()
        with pytest.raises(ProtocolError, match="unexpected header"):
            await stream.recv()
        await state.rst.wait()
        rst = next(f for f in state.received if f.type is FrameType.RST)
        assert decode_exception_payload(rst.payload)[1] == 12002


async def test_a_trailer_payload_that_is_no_exception_is_an_illegal_frame_12004() -> None:
    bad = lambda sid: frame(FrameType.TRAILER, sid, b"\x0b\x00\x01\x00\x00\x00\x01x\x00")  # noqa: E731
    async with (
        asyncio.timeout(LIMIT),
        peer(answer_header_with(bad)) as (address, state),
        connect(address) as cli,
    ):
        stream = await cli.EchoBidi()
        with pytest.raises(ProtocolError):
            await stream.recv()
        await state.rst.wait()
        rst = next(f for f in state.received if f.type is FrameType.RST)
        assert decode_exception_payload(rst.payload)[1] == 12004


async def test_a_bad_biz_extra_is_a_protocol_error() -> None:
    bad = lambda sid: frame(FrameType.TRAILER, sid, b"", {"biz-status": "5", "biz-extra": "not json"})  # noqa: E731
    async with asyncio.timeout(LIMIT), peer(answer_header_with(bad)) as (address, _), connect(address) as cli:
        stream = await cli.EchoBidi()
        with pytest.raises(ProtocolError, match="biz-extra"):
            await stream.recv()


async def test_bad_bytes_from_the_server_fail_every_stream_of_the_connection() -> None:
    garbage = lambda sid: b"\x00\x00\x00\x10GARBAGE-GARBAGE!"  # noqa: E731
    async with (
        asyncio.timeout(LIMIT),
        peer(answer_header_with(garbage)) as (address, _),
        connect(address) as cli,
    ):
        stream = await cli.EchoBidi()
        with pytest.raises(RemoteOrNetworkError, match="connection closed"):
            await stream.recv()
        with pytest.raises(RemoteOrNetworkError):
            await stream.send(Request(message="x"))


async def test_the_client_sends_its_trailer_after_the_servers_end() -> None:
    end = lambda sid: frame(FrameType.TRAILER, sid)  # noqa: E731
    async with (
        asyncio.timeout(LIMIT),
        peer(answer_header_with(end)) as (address, state),
        connect(address) as cli,
    ):
        stream = await cli.EchoBidi()
        with pytest.raises(EOFError):
            await stream.recv()
        for _ in range(200):  # bounded: the compatibility Trailer is written right after the end
            if any(f.type is FrameType.TRAILER for f in state.received):
                break
            await asyncio.sleep(0.01)
        assert [f.type for f in state.received] == [FrameType.HEADER, FrameType.TRAILER]


async def test_cancel_sends_an_rst_with_the_callers_name_as_cancel_path_then_a_trailer() -> None:
    named = client.with_client_basic_info("caller-svc")
    async with (
        asyncio.timeout(LIMIT),
        peer(answer_header_with()) as (address, state),
        connect(address, named) as cli,
    ):
        stream = await cli.EchoBidi()
        await stream.send(Request(message="x"))
        stream.cancel()
        await state.rst.wait()
        for _ in range(200):  # bounded: the Trailer follows the Rst in the same write
            if state.received[-1].type is FrameType.TRAILER:
                break
            await asyncio.sleep(0.01)
        kinds = [f.type for f in state.received]
        assert kinds == [FrameType.HEADER, FrameType.DATA, FrameType.RST, FrameType.TRAILER]
        rst = state.received[2]
        assert rst.str_info == {"ttscp": "caller-svc"}
        assert decode_exception_payload(rst.payload)[1] == 12007
