"""Handing connections on the TTHeader port to HTTP/2 and to ttstream (ttheader/handover.py).

The hand-over is synchronous: inside the read callback that detects the protocol, the connection
leaves the TTHeader server's set and joins the h2 transport's (or the ttstream server's). So a stop
that begins at the earliest moment after (a task made in that very callback) finds it in the new
transport's set and drains it there: GOAWAY for HTTP/2, a close for an idle ttstream connection.
Runs on asyncio's loop and, where installed, on uvloop (their transports both swap protocols).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from kitex_grpc.protocol.ttstream import FrameType, encode_stream_frame
from tests.ttheader.support import WatchedConnections, open_raw, read_to_eof, serve

WAIT = 10.0  # seconds any single expected event may take
HTTP2_PREFACE_AND_SETTINGS = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
GOAWAY = 0x7  # HTTP/2 frame type (RFC 9113 §6.8)
# The first 8 bytes of a TTHeader Streaming frame: enough to be detected, too few to be a frame.
TTSTREAM_HEAD = encode_stream_frame(FrameType.HEADER, 1, "Echo")[:8]

LOOPS = ["asyncio"]
try:
    import uvloop

    LOOPS.append("uvloop")
except ImportError:  # an optional dependency
    uvloop = None


class StopOnHandOver(WatchedConnections):
    """The TTHeader server's connection set; when the first connection leaves it (detected as
    another protocol, inside the read callback), starts the server's stop and, in the loop's next
    callback, counts the connections of the transport it went to."""

    def __init__(self, items: Iterable[Any], stop: Callable[[], Any], count: Callable[[], int]) -> None:
        super().__init__(items)
        self._stop = stop
        self._count = count
        self.stopping: asyncio.Task[None] | None = None
        self.adopted_next_callback: int | None = None

    def discard(self, item: Any) -> None:
        super().discard(item)
        if self.stopping is None:
            loop = asyncio.get_running_loop()
            self.stopping = loop.create_task(self._stop())
            loop.call_soon(self._record)

    def _record(self) -> None:
        self.adopted_next_callback = self._count()


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


def run_on(loop_name: str, main: Callable[[], Any]) -> None:
    if loop_name == "uvloop":
        assert uvloop is not None
        uvloop.run(main())
    else:
        asyncio.run(main())


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_stop_right_after_an_http2_hand_over_drains_that_connection_with_goaway(loop_name: str) -> None:
    async def main() -> None:
        async with serve() as (svr, _):
            transport: Any = svr._transport

            def count() -> int:
                return len(transport._h2.connections)

            watched = StopOnHandOver(transport.connections, svr.stop, count)
            transport.connections = watched
            reader, writer = await open_raw(svr.address)
            writer.write(HTTP2_PREFACE_AND_SETTINGS)  # detected as HTTP/2: handed over
            assert GOAWAY in await frame_types_until_goaway(reader)
            writer.close()  # no call in flight: the drain ends when the client goes
            assert watched.stopping is not None
            await asyncio.wait_for(watched.stopping, WAIT)
            assert watched.adopted_next_callback == 1  # in the h2 transport's set already
            assert not transport._h2.connections

    run_on(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_stop_right_after_a_ttstream_hand_over_closes_that_idle_connection(loop_name: str) -> None:
    async def main() -> None:
        async with serve() as (svr, _):
            transport: Any = svr._transport

            def count() -> int:
                return len(transport._ttstream.connections)

            watched = StopOnHandOver(transport.connections, svr.stop, count)
            transport.connections = watched
            reader, writer = await open_raw(svr.address)
            writer.write(TTSTREAM_HEAD)  # detected as TTHeader Streaming: handed over
            assert await read_to_eof(reader, WAIT) == b""  # no stream was opened: closed unanswered
            assert watched.stopping is not None
            await asyncio.wait_for(watched.stopping, WAIT)
            assert watched.adopted_next_callback == 1  # in the ttstream server's set already
            assert not transport._ttstream.connections
            writer.close()

    run_on(loop_name, main)


@pytest.mark.parametrize("head", [HTTP2_PREFACE_AND_SETTINGS, TTSTREAM_HEAD], ids=["http2", "ttstream"])
async def test_a_connection_detected_after_stop_began_is_closed_not_handed_over(head: bytes) -> None:
    """stop() fixes the transports it drains when it begins; one made for a later hand-over would
    keep its connection open, unstopped, after the server stopped."""
    async with serve() as (svr, _):
        transport: Any = svr._transport
        watched = WatchedConnections(transport.connections)
        transport.connections = watched
        reader, writer = await open_raw(svr.address)
        await watched.until(lambda n: n == 1)  # accepted, nothing read yet
        stopping = asyncio.create_task(transport.stop(WAIT))
        await asyncio.sleep(0)  # the stop's first step (it runs before this one resumes)
        assert transport.draining
        writer.write(head)
        assert await read_to_eof(reader, WAIT) == b""
        await asyncio.wait_for(stopping, WAIT)
        assert transport._h2 is None and transport._ttstream is None
        writer.close()
