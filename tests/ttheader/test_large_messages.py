"""Large messages on the TTHeader transport: 4 MiB and 64 MiB Thrift binary fields and Kitex Protobuf
messages round trip within the size limits; a frame over the limit is refused before its body is
read; and a server echoing 64 MiB stays within a small multiple of the message in memory."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client, server
from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.errors import OverLimitError, RemoteOrNetworkError
from kitex_grpc.options.client import DEFAULT_MAX_MESSAGE_SIZE
from kitex_grpc.transport.ttheader.client import frame_limit
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder, encode
from tests.support import EchoService
from tests.ttheader.support import ROOT, Reply, Req, ThriftEcho, connect, open_raw, read_to_eof, serve

MiB = 1 << 20
SIZES = [4 * MiB, 64 * MiB]
CLIENTS = {"pooled": (), "mux": (client.with_mux_connection(2),)}


def limit_for(size: int) -> int:
    """The message size limit both sides run with: a ``size`` field and the struct around it."""
    return size + MiB


def payload_of(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


@asynccontextmanager
async def pb_pair(size: int, kind: str) -> AsyncIterator[Any]:
    svr = echo_kitex.new_server(
        EchoService(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol("ttheader_framed"),
        server.with_max_message_size(limit_for(size)),
    )
    await svr.start()
    cli = echo_kitex.new_client(
        "echo",
        client.with_host_ports(svr.address),
        client.with_transport_protocol("ttheader_framed"),
        client.with_connect_timeout(5),
        client.with_rpc_timeout(60),
        client.with_max_message_size(limit_for(size)),
        *CLIENTS[kind],
    )
    try:
        yield cli
    finally:
        await cli.close()
        await svr.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s // MiB}MiB")
async def test_a_thrift_binary_field_round_trips(size: int, kind: str) -> None:
    payload = payload_of(size)
    limit = limit_for(size)
    async with (
        serve(server.with_max_message_size(limit)) as (svr, _),
        connect(
            svr.address,
            "ttheader",
            client.with_max_message_size(limit),
            client.with_rpc_timeout(60),
            *CLIENTS[kind],
        ) as cli,
    ):
        for seq in (1, 2):  # twice on the same connection: the stream stays in step after a large frame
            reply = await cli.echo(Req(message="big", payload=payload, seq=seq))
            assert (reply.message, reply.seq, len(reply.payload)) == ("big", seq, size)
            assert reply.payload == payload
        assert (await cli.echo(Req(message="small"))).message == "small"


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s // MiB}MiB")
async def test_a_kitex_protobuf_message_round_trips(size: int, kind: str) -> None:
    payload = payload_of(size)
    async with pb_pair(size, kind) as cli:
        for seq in (1, 2):
            reply = await cli.Unary(echo_pb2.EchoRequest(message="big", payload=payload, seq=seq))
            assert (reply.message, reply.seq, len(reply.payload)) == ("big", seq, size)
            assert reply.payload == payload
        assert (await cli.Unary(echo_pb2.EchoRequest(message="small"))).message == "small"


# -- over the limit --------------------------------------------------------------------------------------

ANNOUNCED = 512 * MiB  # what the frame below says follows; the server's limit is the default 4 MiB


def announcing(framing: str, length: int) -> bytes:
    """The first bytes of a frame announcing ``length`` bytes, and a few bytes of its body."""
    if framing == "ttheader":  # LENGTH, MAGIC, FLAGS, SEQ, HEADER_SIZE, then the start of a header
        return struct.pack(">IHHiH", length, 0x1000, 0, 7, 1) + b"\x00\x00\x00\x00" + b"\x80\x01\x00\x01"
    return struct.pack(">II", length, 0x80010001) + b"\x00\x00\x00\x04echo"  # Framed


@pytest.mark.parametrize("framing", ["ttheader", "framed"])
async def test_a_frame_over_the_limit_is_refused_before_its_body_is_read(framing: str) -> None:
    # The read timeout is a minute: a server that waited for the body would hold the connection open.
    async with serve(server.with_read_write_timeout(60)) as (svr, _):
        reader, writer = await open_raw(svr.address)
        tracemalloc.start()
        try:
            started = time.monotonic()
            writer.write(announcing(framing, ANNOUNCED))
            # Closed without a reply, at once: nothing more is sent and the socket stays open on our side.
            assert await read_to_eof(reader, 5) == b""
            assert time.monotonic() - started < 5
            # The server never made room for the announced body (the test and the server share the process).
            assert tracemalloc.get_traced_memory()[1] < 4 * MiB
        finally:
            tracemalloc.stop()
            writer.close()
        async with connect(svr.address, "ttheader") as cli:  # and it serves the next connection
            assert (await cli.echo(Req(message="after"))).message == "after"


async def test_a_frame_just_over_the_limit_is_refused_and_one_at_it_is_read() -> None:
    # The limit is on the frame, so it is checked from the 4-byte LENGTH alone: one byte over is refused.
    limit = frame_limit(DEFAULT_MAX_MESSAGE_SIZE)
    async with serve(server.with_read_write_timeout(60)) as (svr, _):
        reader, writer = await open_raw(svr.address)
        writer.write(announcing("ttheader", limit + 1))
        assert await read_to_eof(reader) == b""
        writer.close()
        # At the limit the server waits for the body (the bytes of a truncated frame, then EOF).
        reader, writer = await open_raw(svr.address)
        writer.write(announcing("ttheader", limit))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.5)
        writer.write_eof()
        assert await read_to_eof(reader) == b""
        writer.close()


async def test_a_request_over_the_clients_limit_fails_before_it_is_sent() -> None:
    async with serve() as (svr, handler), connect(svr.address, "ttheader") as cli:
        big = Req(message="big", payload=bytes(DEFAULT_MAX_MESSAGE_SIZE + 1))
        with pytest.raises(OverLimitError, match=r"trying to send message larger than max \(4194"):
            await cli.echo(big)
        assert handler.callers == []  # nothing reached the server
        assert (await cli.echo(Req(message="after"))).message == "after"


async def test_a_request_over_the_servers_limit_closes_that_connection_only() -> None:
    async with (
        serve() as (svr, _),
        connect(svr.address, "ttheader", client.with_max_message_size(64 * MiB)) as cli,
    ):
        with pytest.raises(RemoteOrNetworkError, match=r"closed by peer|reset"):
            await cli.echo(Req(message="big", payload=bytes(8 * MiB)))
        assert (await cli.echo(Req(message="after"))).message == "after"


class BigReplies(ThriftEcho):
    """Answers every echo with a reply of ``size`` payload bytes, whatever was asked."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    async def echo(self, req: Any) -> Any:
        return Reply(message=req.message, payload=bytes(self.size))


async def test_a_reply_over_the_clients_limit_fails_that_call_with_the_sizes() -> None:
    handler = BigReplies(DEFAULT_MAX_MESSAGE_SIZE + MiB)
    async with (
        serve(server.with_max_message_size(64 * MiB), handler=handler) as (svr, _),
        connect(svr.address, "ttheader") as cli,  # the default 4 MiB limit
    ):
        limit = frame_limit(DEFAULT_MAX_MESSAGE_SIZE)
        with pytest.raises(RemoteOrNetworkError, match=rf"bad reply from .*exceeds the limit {limit}"):
            await cli.echo(Req(message="x"))
        handler.size = 10
        assert len((await cli.echo(Req(message="y"))).payload) == 10  # a new connection serves on


# -- memory ----------------------------------------------------------------------------------------------


class MemoryServer:
    """tests/ttheader/memory_server.py in a process of its own."""

    def __init__(self, kind: str, limit: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ttheader.memory_server", kind, str(limit)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.address, build = self._answer("LISTENING")
        self.compiled = build == "compiled"

    def _answer(self, kind: str) -> list[str]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == kind, line
        return line[1:]

    async def command(self, command: str, kind: str) -> list[str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return await asyncio.wait_for(asyncio.to_thread(self._answer, kind), 30)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        finally:
            self.proc.kill()


@pytest.mark.parametrize("kind", ["thrift", "protobuf"])
async def test_the_servers_memory_stays_within_a_small_multiple_of_a_64_mib_message(kind: str) -> None:
    size = 64 * MiB
    payload = payload_of(size)
    memory = MemoryServer(kind, limit_for(size))
    try:
        opts = (client.with_max_message_size(limit_for(size)), client.with_rpc_timeout(60))
        if kind == "thrift":
            async with connect(memory.address, "ttheader", *opts) as cli:
                assert (await cli.echo(Req(message="warm-up"))).message == "warm-up"
                await memory.command("reset", "OK")
                assert (await cli.echo(Req(message="big", payload=payload))).payload == payload
        else:
            pb = echo_kitex.new_client(
                "echo",
                client.with_host_ports(memory.address),
                client.with_transport_protocol("ttheader_framed"),
                client.with_connect_timeout(5),
                *opts,
            )
            try:
                assert (await pb.Unary(echo_pb2.EchoRequest(message="warm-up"))).message == "warm-up"
                await memory.command("reset", "OK")
                reply = await pb.Unary(echo_pb2.EchoRequest(message="big", payload=payload))
                assert reply.payload == payload
            finally:
                await pb.close()
        rss, traced = (int(x) for x in await memory.command("peak", "PEAK"))
        compiled = memory.compiled
    finally:
        memory.close()
    # Thrift: the binary field (request and reply share it), the encoded reply body and the reply
    # frame; the unsent rest of the frame is written from the frame itself, and the request's bytes
    # are let go once decoded. Kitex Protobuf adds one: protobuf keeps the field in its own arena, and
    # reading it (``req.payload``) makes the Python bytes the reply is built from.
    messages = 3 if kind == "thrift" else 4
    # The compiled Thrift writer adds one traced message that is not a copy: it builds the reply
    # body in librt's BytesWriter, whose buffer grows by doubling, so a body just over 64 MiB
    # reserves 128 MiB (a 63 MiB body peaks at 2.0x its size while written, a 64 MiB one at 3.0x).
    # The untouched half is traced but never resident, so the RSS bound does not count it.
    reserved = 1 if compiled and kind == "thrift" else 0
    assert traced <= (messages + reserved + 0.25) * size, f"traced peak {traced / size:.2f}x the message"
    # The resident set adds what the allocator keeps of the request read in pieces, and for Kitex
    # Protobuf what protobuf's own allocator keeps: measured 5.0x with the locked protobuf, 6.0x with
    # the lowest supported one (4.25.0).
    slack = 1.5 if kind == "thrift" else 2.5
    if rss >= 0:
        assert rss <= (messages + slack) * size, f"RSS rose {rss / size:.2f}x the message"


def test_a_frame_read_in_pieces_is_held_at_most_twice_while_it_is_decoded() -> None:
    # A 64 MiB frame arriving in 256 KiB reads is kept in a buffer until complete, then copied out
    # once; the buffer is emptied at that copy, so the frame is held twice only for the copy itself
    # (and the decoded message then holds the body: the frame's bytes are let go).
    size = 64 * MiB
    frame = encode(Framing.TTHEADER, THRIFT, "echo", 1, 1, bytes(size))
    decoder = MessageDecoder(Framing.TTHEADER, frame_limit(limit_for(size)))
    view = memoryview(frame)
    step = 256 * 1024
    tracemalloc.start()
    try:
        messages = []
        for start in range(0, len(frame), step):
            messages += decoder.receive_data(view[start : start + step])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [len(m.body) for m in messages] == [size]
    assert peak <= 2.25 * size, f"peak {peak / size:.2f}x the frame"
