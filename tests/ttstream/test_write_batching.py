"""A burst of replies leaves in writes of at most FLUSH_FRAMES frames, not at the end of the loop turn.

Pipelined messages arrive in bursts; a handler answers a whole burst in one task step. If its replies
waited for the turn's end, client and server would take turns over whole bursts (bench/ttstream_bidi.py:
a third of the throughput). Here the handler yields 40 replies and then holds the event loop until a
raw client in another thread has read FLUSH_FRAMES of them: only frames already written can arrive.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

from kitex_grpc.codec import thrift as thrift_codec
from kitex_grpc.protocol.ttstream import FrameType, StreamFrameDecoder, encode_stream_frame
from kitex_grpc.transport.ttstream.conn import FLUSH_FRAMES
from tests.ttstream.support import Handler, Request, Response, serve

LIMIT = 5.0
REPLIES = 40


class Bursting(Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen_early = threading.Event()  # set by the client thread after FLUSH_FRAMES replies
        self.flushed_early: bool | None = None

    async def EchoServer(self, request: Any) -> AsyncIterator[Any]:
        for i in range(REPLIES):
            yield Response(message="r", seq=i)
        # Blocks the loop on purpose: no loop turn ends until the client saw the first replies.
        self.flushed_early = self.seen_early.wait(LIMIT)


def read_replies(address: str, handler: Bursting, out: list[Any]) -> None:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=LIMIT) as sock:
        request = thrift_codec.serializer(Request)(Request(message="ok", count=REPLIES))
        sock.sendall(
            encode_stream_frame(FrameType.HEADER, 1, "EchoServer", b"", {"isn": "StreamService"})
            + encode_stream_frame(FrameType.DATA, 1, "EchoServer", request)
            + encode_stream_frame(FrameType.TRAILER, 1, "EchoServer")
        )
        decoder = StreamFrameDecoder()
        decode = thrift_codec.deserializer(Response)
        while not out or out[-1] != "trailer":
            chunk = sock.recv(65536)
            if not chunk:
                break
            for frame in decoder.receive_data(chunk):
                if frame.type is FrameType.DATA:
                    out.append(decode(frame.payload).seq)
                elif frame.type is FrameType.TRAILER:
                    out.append("trailer")
            if len([x for x in out if x != "trailer"]) >= FLUSH_FRAMES:
                handler.seen_early.set()


async def test_a_burst_of_replies_is_written_before_the_loop_turn_ends() -> None:
    handler = Bursting()
    async with serve(handler=handler) as (svr, _):
        out: list[Any] = []
        thread = threading.Thread(target=read_replies, args=(svr.address, handler, out), daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, 2 * LIMIT)
        assert not thread.is_alive()
    assert handler.flushed_early is True
    assert out == [*range(REPLIES), "trailer"]
