"""One accepted connection on the TTHeader port: reading, detection, decoding, timeouts and writing.

The first bytes say which protocol the connection speaks (:mod:`.handover`); from then on each read
is decoded into requests (:class:`~kitex_grpc.transport.ttheader.wire.MessageDecoder`, where a
frame's length is read and checked against the server's limit), which a
:class:`~kitex_grpc.transport.ttheader.scheduler.RequestScheduler` runs. Bytes no protocol matches,
a bad TTHeader, an oversize frame: logged, connection closed (Kitex cannot address a reply either);
requests decoded before bad bytes are answered first.

The replies of the requests started together (two or more decoded from one read) that end in their
first step are written together, in one write: on Python 3.11 their tasks take that step in the
loop's next iteration, and the batch is written by a callback queued behind them.

Timeouts (``with_read_write_timeout``, ``with_max_conn_idle_time``; Kitex's 5 s and 10 min): a request
whose first byte is older than the read timeout and which is still incomplete ends its connection
(logged, nothing answered: the stalled peer cannot be); a connection with nothing read and nothing in
progress for the idle time is closed. The server's sweep calls :meth:`ServerConnection.check_timeouts`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, cast

from kitex_grpc.address import format_address
from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.detection import DetectedProtocol, detect
from kitex_grpc.protocol.frames import FramesBeforeError
from kitex_grpc.transport.conn_limit import admit
from kitex_grpc.transport.paced_writes import PacedWrites
from kitex_grpc.transport.receive_buffer import ReceiveBufferProtocol, thread_buffer
from kitex_grpc.transport.ttheader.handover import FRAMINGS, ConnectionLimiter
from kitex_grpc.transport.ttheader.scheduler import EAGER_START, RequestScheduler
from kitex_grpc.transport.ttheader.wire import MessageDecoder

if TYPE_CHECKING:
    from kitex_grpc.transport.ttheader.server import TTHeaderServerTransport

__all__ = ["ServerConnection"]

logger = logging.getLogger("kitex_grpc.transport.ttheader")


class ServerConnection(ReceiveBufferProtocol):
    """One accepted connection: detection, decoding, and serving its requests."""

    def __init__(self, server: TTHeaderServerTransport) -> None:
        self._server = server
        self._serving = server.serving
        self._transport: asyncio.Transport | None = None
        self._writes: PacedWrites | None = None  # set with _transport: every write and close goes through it
        self._head: bytearray | None = bytearray()
        self._decoder: MessageDecoder | None = None
        self._scheduler = RequestScheduler(server.serving, self)
        self._out: list[bytes] | None = None  # replies of requests started together, written together
        self._closing = False  # no more requests: close once the current one is answered
        self._bad_input: str | None = None  # bad bytes after good requests: close once those are answered
        self._paused = False
        self._limiter: ConnectionLimiter | None = None  # set while this connection is counted
        self.peer = ""
        # The idle clock is time.monotonic (asyncio's loop.time is a Python call around it), read in
        # the server's sweep too; the sweep's timer itself runs on the loop's clock.
        self.last_active = time.monotonic()  # last bytes read or request answered
        self.partial_since: float | None = None  # when the unfinished request's bytes began arriving
        # the base class's view, taken here: protocols are made on the loop's thread, which reads into it
        self._receive_view = thread_buffer()

    # -- asyncio.BufferedProtocol: the base class's two methods, without its first-use check (every read) --

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._receive_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._receive_view[:nbytes])

    # -- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        self.peer = format_address(peer[0], peer[1]) if isinstance(peer, tuple) else str(peer)
        limiter = self._server.conn_limiter
        if limiter is not None:
            if not admit(limiter, self, self._server.events, "ttheader", self.peer):
                self._closing = True
                transport.close()  # nothing was read or written: the client sees a plain close
                return
            self._limiter = limiter
        self._transport = transport
        self._writes = PacedWrites(transport)
        self._server.connections.add(self)

    def data_received(self, data: memoryview) -> None:
        if self._closing or self._bad_input is not None:
            return
        now = self.last_active = time.monotonic()
        decoder = self._decoder
        if decoder is None:
            decoder = self._detect(data)
            if decoder is None:
                if self.partial_since is None:
                    self.partial_since = now
                return
            head, self._head = self._head, None
            assert head is not None
            data = memoryview(head)
        try:
            messages = decoder.receive_data(data)
        except FramesBeforeError as exc:  # the requests before the bad bytes are answered first
            messages = exc.frames
            self._bad_input = f"undecodable {decoder.framing.value} bytes: {exc.detail}"
        except ProtocolError as exc:
            self._abandon(f"undecodable {decoder.framing.value} bytes: {exc.detail}")
            return
        # The read timeout runs from the first byte of an unfinished request until it completes.
        if messages or self.partial_since is None:
            self.partial_since = now if decoder.buffered else None
        if not messages:
            return
        scheduler = self._scheduler
        scheduler.queue.extend(messages)
        if not (scheduler.in_order and scheduler.active):
            self._serve_pass()
        if self._bad_input is not None and not scheduler.active and not self._closing:
            self._abandon(self._bad_input)

    def eof_received(self) -> bool | None:
        decoder = self._decoder
        pending = decoder.buffered if decoder is not None else len(self._head or b"")
        if pending:
            self._server.events.log(
                "truncated",
                logging.WARNING,
                "ttheader server: connection from %s ended inside a message (%d bytes truncated)",
                self.peer,
                pending,
            )
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._writes is not None:
            self._writes.drop()
        self._scheduler.lost()
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release(self)
        self._server.forget(self)

    def check_timeouts(self, now: float, idle_time: float, read_timeout: float) -> None:
        """Close this connection if a request stalled half-read past ``read_timeout``, or if it has
        been idle (nothing read, nothing in progress) for ``idle_time`` (Kitex WithReadWriteTimeout,
        WithMaxConnIdleTime)."""
        if self._closing or self._transport is None:
            return
        if self.partial_since is not None and now - self.partial_since > read_timeout:
            pending = self._decoder.buffered if self._decoder is not None else len(self._head or b"")
            self._abandon(f"read timeout: {pending} bytes of a request waited {read_timeout:g}s for the rest")
        elif self._scheduler.idle and now - self.last_active > idle_time:
            logger.info("ttheader server: closing the connection from %s: idle for %gs", self.peer, idle_time)
            self.close_after_write()

    def pause_writing(self) -> None:
        # A slow reader: stop reading its requests until its replies drain (others are unaffected).
        if self._writes is not None:
            self._writes.pause()
        if self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and self._paused:
            self._paused = False
            self._transport.resume_reading()
        if self._writes is not None:
            self._writes.resume()

    # -- detection --------------------------------------------------------------------------------------

    def _detect(self, data: memoryview) -> MessageDecoder | None:
        head = self._head
        assert head is not None
        head += data
        try:
            detected = detect(head)
        except ProtocolError as exc:
            self._abandon(exc.detail)
            return None
        if detected is None:
            return None
        if detected is DetectedProtocol.HTTP2 or detected is DetectedProtocol.TTHEADER_STREAMING:
            if self._serving.draining:
                # stop() has begun and fixed what it drains: a transport taking this connection over
                # now would keep it open past the stop. Nothing was asked on it yet: close it.
                self._head = None
                self.close_after_write()
                return None
            transport, self._transport = self._transport, None
            self._writes = None  # nothing was answered on it: nothing queued
            self._head = None
            self._server.forget(self)
            assert transport is not None
            limiter, self._limiter = self._limiter, None
            server = self._server
            adopt = server.adopt_http2 if detected is DetectedProtocol.HTTP2 else server.adopt_ttstream
            adopt(transport, bytes(head), None if limiter is None else (limiter, self))
            self._closing = True
            return None
        framing = FRAMINGS.get(detected)
        if framing is None:
            self._abandon(f"unsupported protocol {detected.value}")
            return None
        self._decoder = MessageDecoder(framing, self._server.max_frame)
        self._scheduler.in_order = not framing.has_header
        return self._decoder

    # -- serving ----------------------------------------------------------------------------------------

    def _serve_pass(self) -> None:
        """Start the requests that may start now; the replies of two or more are written together."""
        scheduler = self._scheduler
        batch = self._out is None and len(scheduler.queue) > 1  # one request: its reply is written directly
        if batch:
            self._out = []
        try:
            scheduler.run()
        finally:
            if batch:
                if EAGER_START:  # the requests that end without suspending have ended
                    self._end_batch()
                else:  # queued behind the first steps of the requests' tasks (call_soon is FIFO)
                    scheduler.loop.call_soon(self._end_batch)
        # Idle again: data_received has just set the idle clock, so only a graceful stop is checked.
        if not scheduler.active and self._serving.draining:
            self._close()

    def became_idle(self) -> None:
        """The last request in progress has ended (called by the scheduler)."""
        self.last_active = time.monotonic()
        if self._bad_input is not None:
            if not self._closing:
                self._abandon(self._bad_input)
            return
        if self._serving.draining:
            self._close()

    # -- writing ----------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send a reply, or add it to the batch of the requests started together."""
        out = self._out
        if out is not None:
            out.append(data)
            return
        self._send(data)

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            assert self._writes is not None  # set with _transport
            self._writes.write(data)

    def _close(self) -> None:
        """Close once every queued reply is written."""
        if self._writes is not None:
            self._writes.close()

    def _end_batch(self) -> None:
        """Write the batched replies; later ones are written as they come."""
        self._flush()
        self._out = None

    def _flush(self) -> None:
        """Write the replies batched so far (batching stays on)."""
        out = self._out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._send(data)

    def close_after_write(self) -> None:
        """Write what is batched, serve nothing more, and close."""
        self._flush()
        self._closing = True
        self._scheduler.stop()
        self._close()

    def _abandon(self, why: str) -> None:
        self._server.events.log(
            "bad_input",
            logging.WARNING,
            "ttheader server: closing the connection from %s: %s",
            self.peer,
            why,
        )
        self.close_after_write()

    # -- shutdown ---------------------------------------------------------------------------------------

    def drain(self, now: float, quiet: float) -> None:
        """Graceful stop: close now if idle for ``quiet`` seconds, else after the request being served
        (or the next one, answered with ``crrst``) is answered."""
        if not self._scheduler.active and now - self.last_active >= quiet:
            self._close()

    def abort(self) -> None:
        self._scheduler.abort()
        if self._writes is not None:
            self._writes.drop()
        if self._transport is not None:
            self._transport.abort()
