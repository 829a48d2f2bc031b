"""kitex_grpc/transport/epoll_io.py: connections served from one epoll set, on real loopback sockets.

The TTHeader server runs on it on asyncio's loop (every TTHeader test exercises it); these tests
drive it with a small protocol of their own, through what asyncio's socket transport does: reads,
writes the socket cannot take at once, flow control, end of stream, close and abort, errors in the
protocol, a peer that resets, handing a socket to asyncio, and closing the listener.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kitex_grpc.transport import epoll_io
from kitex_grpc.transport.epoll_io import EpollListener, EpollTransport, listening_sockets
from kitex_grpc.transport.ttheader import server as ttheader_server
from tests.ttheader import support as tt

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="epoll is Linux's")

WAIT = 10.0  # seconds any single expected event may take


class Recorder(asyncio.BufferedProtocol):
    """Echoes what it reads (``boom`` raises instead) and records every callback."""

    def __init__(self) -> None:
        self.buf = bytearray(4096)
        self.events: list[Any] = []
        self.transport: Any = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()
        self.eof = asyncio.Event()
        self.keep_open_on_eof = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.buf[:nbytes])
        self.events.append(data)
        if data == b"boom":
            raise RuntimeError("boom")
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.events.append("eof")
        self.eof.set()
        return self.keep_open_on_eof

    def pause_writing(self) -> None:
        self.events.append("pause")
        self.paused.set()

    def resume_writing(self) -> None:
        self.events.append("resume")
        self.resumed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)


class Served:
    def __init__(self, listener: EpollListener, port: int) -> None:
        self.listener = listener
        self.port = port
        self.protocols: list[Recorder] = []
        self.accepted = asyncio.Queue[Recorder]()

    async def next_protocol(self) -> Recorder:
        return await asyncio.wait_for(self.accepted.get(), WAIT)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Recorder]:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), WAIT)
        return reader, writer, await self.next_protocol()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    loop = asyncio.get_running_loop()
    if not epoll_io.can_serve_with_epoll(loop):
        pytest.fail(f"{type(loop).__name__}: the tests run on asyncio's selector loop")
    sockets = await listening_sockets("127.0.0.1", 0, 16)
    box: list[Served] = []

    def factory() -> Recorder:
        protocol = Recorder()
        box[0].protocols.append(protocol)
        box[0].accepted.put_nowait(protocol)
        return protocol

    listener = EpollListener(loop, sockets, factory)
    box.append(Served(listener, sockets[0].getsockname()[1]))
    listener.start()
    try:
        yield box[0]
    finally:
        listener.close()
        for protocol in box[0].protocols:
            if protocol.transport is not None:
                protocol.transport.abort()
        for protocol in box[0].protocols:
            await asyncio.wait_for(protocol.lost, WAIT)


async def test_reads_are_delivered_and_writes_sent(served: Served) -> None:
    reader, writer, protocol = await served.connect()
    assert isinstance(protocol.transport, EpollTransport)
    assert protocol.transport.get_extra_info("peername") == writer.get_extra_info("sockname")
    assert protocol.transport.get_extra_info("sockname") == ("127.0.0.1", served.port)
    for message in (b"one", b"two"):
        writer.write(message)
        assert await asyncio.wait_for(reader.readexactly(len(message)), WAIT) == message
    writer.close()
    assert await asyncio.wait_for(protocol.lost, WAIT) is None
    assert protocol.events == ["made", b"one", b"two", "eof", "lost"]


async def test_a_write_the_socket_cannot_take_is_kept_paused_and_sent_in_order(served: Served) -> None:
    reader, writer, protocol = await served.connect()
    transport = protocol.transport
    chunk = bytes(range(256)) * 1024  # 256 KiB per write; the peer reads nothing yet
    sent = 0
    for _ in range(64):  # bounded: the kernel's buffers hold far less than 16 MiB
        transport.write(chunk)
        sent += len(chunk)
        if protocol.paused.is_set():
            break
    assert protocol.paused.is_set() and transport.get_write_buffer_size() > 64 * 1024
    received = await asyncio.wait_for(reader.readexactly(sent), WAIT)
    assert received == chunk * (sent // len(chunk))
    await asyncio.wait_for(protocol.resumed.wait(), WAIT)
    assert transport.get_write_buffer_size() == 0
    assert protocol.events[-2:] == ["pause", "resume"]
    writer.close()


async def test_a_large_bytes_write_is_kept_as_a_view_and_later_writes_follow_it(served: Served) -> None:
    reader, writer, protocol = await served.connect()
    transport = protocol.transport
    transport.set_write_buffer_limits(high=1 << 30)  # no pause: keep everything
    large = bytes(range(251)) * (32 * 1024)  # ~8 MiB: more than the kernel takes at once
    transport.write(large)
    kept = transport.get_write_buffer_size()
    assert 0 < kept < len(large)
    mutable = bytearray(b"m" * 1000)
    transport.write(mutable)  # a bytearray is copied: changing it afterwards changes nothing sent
    mutable[:] = b"x" * 1000
    transport.write(b"tail")
    assert transport.get_write_buffer_size() == kept + 1004
    transport.close()
    received = await asyncio.wait_for(reader.read(-1), WAIT)
    assert received == large + b"m" * 1000 + b"tail"
    assert await asyncio.wait_for(protocol.lost, WAIT) is None
    writer.close()


async def test_close_sends_what_is_kept_then_reports_the_loss(served: Served) -> None:
    reader, writer, protocol = await served.connect()
    transport = protocol.transport
    transport.set_write_buffer_limits(high=1 << 30)  # no pause: keep everything
    chunk = b"k" * (1 << 20)
    for _ in range(4):
        transport.write(chunk)
    assert transport.get_write_buffer_size() > 0
    transport.close()
    assert transport.is_closing()
    assert not protocol.lost.done()
    received = await asyncio.wait_for(reader.read(-1), WAIT)  # up to the end of the stream
    assert len(received) == 4 * len(chunk)
    assert await asyncio.wait_for(protocol.lost, WAIT) is None
    writer.close()


async def test_abort_drops_what_is_kept(served: Served) -> None:
    reader, writer, protocol = await served.connect()
    transport = protocol.transport
    transport.set_write_buffer_limits(high=1 << 30)
    for _ in range(32):  # far more than the kernel's socket buffers hold
        transport.write(b"a" * (1 << 20))
    transport.abort()
    assert await asyncio.wait_for(protocol.lost, WAIT) is None
    received = await asyncio.wait_for(reader.read(-1), WAIT)
    assert len(received) < 32 << 20  # what the kernel took before the abort, not the rest
    writer.close()


async def test_an_error_in_the_protocol_ends_that_connection_only(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    reader1, writer1, protocol1 = await served.connect()
    reader2, writer2, _ = await served.connect()
    with caplog.at_level(logging.ERROR, logger="kitex_grpc.transport"):
        writer1.write(b"boom")
        lost = await asyncio.wait_for(protocol1.lost, WAIT)
    assert isinstance(lost, RuntimeError) and str(lost) == "boom"
    assert "protocol.buffer_updated() failed" in caplog.text
    assert await asyncio.wait_for(reader1.read(-1), WAIT) == b""
    writer2.write(b"still here")
    assert await asyncio.wait_for(reader2.readexactly(10), WAIT) == b"still here"
    for writer in (writer1, writer2):
        writer.close()


async def test_a_peer_that_resets_ends_its_connection_with_the_error(served: Served) -> None:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=WAIT)
    protocol = await served.next_protocol()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST
    lost = await asyncio.wait_for(protocol.lost, WAIT)
    assert isinstance(lost, ConnectionResetError)
    assert protocol.events == ["made", "lost"]


async def test_end_of_stream_can_keep_the_connection_half_open(served: Served) -> None:
    reader, writer, protocol = await served.connect()
    protocol.keep_open_on_eof = True
    writer.write_eof()
    await asyncio.wait_for(protocol.eof.wait(), WAIT)
    assert not protocol.lost.done()
    assert not protocol.transport.is_reading()
    protocol.transport.write(b"after eof")
    assert await asyncio.wait_for(reader.readexactly(9), WAIT) == b"after eof"
    protocol.transport.close()
    assert await asyncio.wait_for(protocol.lost, WAIT) is None
    writer.close()


async def test_paused_reading_leaves_bytes_in_the_socket_until_resumed(served: Served) -> None:
    reader, writer, protocol = await served.connect()
    protocol.transport.pause_reading()
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.2)  # nothing echoed while paused
    protocol.transport.resume_reading()
    assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"held"
    writer.close()


async def test_a_detached_socket_is_served_by_asyncio_from_where_it_was(served: Served) -> None:
    reader, writer, protocol = await served.connect()
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"ping"
    sock = protocol.transport.detach()
    received = asyncio.Queue[bytes]()

    class Plain(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            received.put_nowait(data)

    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(Plain, sock)
    writer.write(b"after")
    assert await asyncio.wait_for(received.get(), WAIT) == b"after"
    assert not protocol.lost.done()  # the old protocol is not told: the connection lives on
    transport.close()
    protocol.lost.set_result(None)  # for the fixture's clean-up
    writer.close()


async def test_a_closed_listener_accepts_no_more_and_its_connections_carry_on(served: Served) -> None:
    reader, writer, protocol = await served.connect()
    served.listener.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", served.port), WAIT)
    writer.write(b"open")
    assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"open"
    assert not served.listener._epoll.closed
    protocol.transport.close()
    await asyncio.wait_for(protocol.lost, WAIT)
    assert served.listener._epoll.closed  # the last connection gone: the epoll set too
    writer.close()


async def test_the_ttheader_server_serves_with_epoll_on_asyncios_loop_and_without_when_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for use_epoll in (True, False):
        monkeypatch.setattr(ttheader_server, "SERVE_WITH_EPOLL", use_epoll)
        async with tt.serve() as (svr, _):
            transport: Any = svr._transport
            assert isinstance(transport._server, EpollListener) is use_epoll
            async with tt.connect(svr.address) as cli:
                reply = await cli.echo(tt.Req(message="hello"))
            assert reply.message == "hello"


class RunsOutOnce(socket.socket):
    """A listening socket whose first accept fails as a process out of file descriptors does."""

    failed = False

    def accept(self) -> tuple[socket.socket, Any]:
        if not self.failed:
            self.failed = True
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


async def test_accepting_pauses_when_out_of_descriptors_and_resumes(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    sock = RunsOutOnce(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    protocols: asyncio.Queue[Recorder] = asyncio.Queue()

    def factory() -> Recorder:
        protocol = Recorder()
        protocols.put_nowait(protocol)
        return protocol

    listener = EpollListener(loop, [sock], factory)
    listener.start()
    try:
        with caplog.at_level(logging.ERROR, logger="kitex_grpc.transport"):
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*sock.getsockname()), WAIT)
            protocol = await asyncio.wait_for(protocols.get(), WAIT)  # accepted on the retry, 1 s later
        assert sock.failed and "out of system resource" in caplog.text
        writer.write(b"late")
        assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"late"
        writer.close()
        await asyncio.wait_for(protocol.lost, WAIT)
    finally:
        listener.close()


HTTP2_PREFACE_AND_SETTINGS = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
GOAWAY = 0x7  # HTTP/2 frame type (RFC 9113 §6.8)


async def frame_types_until_goaway(reader: asyncio.StreamReader) -> list[int]:
    """The types of the HTTP/2 frames the server sends, up to its first GOAWAY or its close."""
    types: list[int] = []
    async with asyncio.timeout(WAIT):
        while GOAWAY not in types:
            try:
                head = await reader.readexactly(9)
            except asyncio.IncompleteReadError:
                break
            types.append(head[3])
            await reader.readexactly(int.from_bytes(head[:3], "big"))
    return types


async def test_stop_waits_for_an_http2_hand_over_in_progress_and_drains_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A socket detached from the epoll set reaches the h2 transport a few loop passes later; a stop in
    between must wait for it and send that connection its GOAWAY, not leave it open and undrained."""
    loop = asyncio.get_running_loop()
    handing_over, release = asyncio.Event(), asyncio.Event()
    connect_accepted_socket = loop.connect_accepted_socket

    async def held_back(*args: Any, **kwargs: Any) -> Any:
        handing_over.set()
        await release.wait()
        return await connect_accepted_socket(*args, **kwargs)

    monkeypatch.setattr(loop, "connect_accepted_socket", held_back)
    async with tt.serve() as (svr, _):
        reader, writer = await tt.open_raw(svr.address)
        writer.write(HTTP2_PREFACE_AND_SETTINGS)  # detected as HTTP/2: detached, handed over
        await asyncio.wait_for(handing_over.wait(), WAIT)
        stopping = asyncio.create_task(svr.stop())
        for _ in range(50):  # loop passes, not time: a stop that does not wait is done within a few
            await asyncio.sleep(0)
        assert not stopping.done()
        release.set()
        assert GOAWAY in await frame_types_until_goaway(reader)
        writer.close()
        await asyncio.wait_for(stopping, WAIT)
