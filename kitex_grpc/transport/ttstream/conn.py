"""The asyncio side of one ttstream connection, shared by client and server.

Frames of all streams are written in the order they come (Kitex writes and flushes each frame under
a per-connection lock, so streams interleave at frame granularity: §11.10); those of one event-loop
turn leave in one write, at most :data:`FLUSH_FRAMES` of them: a handler answering a burst of pipelined
messages sends its first replies while it works on the rest, so the peer works at the same time
instead of both sides taking turns over whole bursts. Reading pauses while a
stream's receive queue is full or the socket's write buffer is over asyncio's high-water mark, and
resumes when neither holds: a peer that floods frames faster than they are consumed is held back by
TCP, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.frames import FramesBeforeError
from kitex_grpc.protocol.ttstream import StreamFrame, StreamFrameDecoder
from kitex_grpc.transport.ttstream.queue import RecvQueue
from kitex_grpc.transport.turn_writer import TurnWriter

__all__ = ["FLUSH_FRAMES", "StreamConnection"]

# Frames queued before a write goes out without waiting for the loop turn's end. With one write per
# turn, 64 pipelined echoes (bench/ttstream_bidi.py) went back and forth as whole bursts of 64: each
# process idled while the other worked. 16 let both work at once: 64-byte echoes 72-79k -> 106-194k
# messages/s, at the same CPU per message (4 was 112-144k: more writes).
FLUSH_FRAMES: Final = 16


class StreamConnection(asyncio.Protocol):
    """Decoding, writing and read/write pausing; subclasses handle frames and the end."""

    def __init__(self, max_frame_size: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._decoder = StreamFrameDecoder(max_frame_size)
        self._held: set[RecvQueue] = set()
        self.write_paused = False  # the socket's write buffer is over its high-water mark
        self._reading_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._out = TurnWriter(self._loop, self._send, FLUSH_FRAMES)  # frames of one loop turn in one write
        self.peer = ""

    # -- to implement ---------------------------------------------------------------------------------

    def frame_received(self, frame: StreamFrame) -> None:
        raise NotImplementedError

    def protocol_failed(self, error: ProtocolError) -> None:
        """Bad bytes: the connection is closed after this returns."""
        raise NotImplementedError

    def lost(self, error: BaseException | None) -> None:
        """The connection is gone: end every stream."""
        raise NotImplementedError

    # -- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self._decoder.receive_data(data)
        except ProtocolError as exc:
            if isinstance(exc, FramesBeforeError):
                for frame in exc.frames:
                    self.frame_received(frame)
            self.protocol_failed(exc)
            self.close()
            return
        try:
            for frame in frames:
                self.frame_received(frame)
        except ProtocolError as exc:  # a frame that cannot be answered: this connection ends, not more
            self.protocol_failed(exc)
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost ends the streams

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake_writers()
        self.lost(exc)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()
        self._update_reading()

    # -- writing --------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue one frame; the frames of one loop turn go out in one ``transport.write``."""
        if self.transport is None or self.closed:
            return
        self._out.write(data)

    def _send(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    async def writable(self) -> None:
        """Wait while the socket's write buffer is over its high-water mark."""
        while self.write_paused and not self.closed:
            waiter = self._writable
            if waiter is None or waiter.done():
                waiter = self._writable = asyncio.get_running_loop().create_future()
            await waiter

    def _wake_writers(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self._out.flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- FlowOwner: receive queues hold the reads -----------------------------------------------------

    def hold(self, queue: RecvQueue) -> None:
        self._held.add(queue)
        self._update_reading()

    def release(self, queue: RecvQueue) -> None:
        self._held.discard(queue)
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        pause = bool(self._held) or self.write_paused
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()
