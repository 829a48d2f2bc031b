"""The asyncio side of one HTTP/2 connection: it only shovels bytes between a socket and a core.

Driving (the core's contract): after each socket read, ``receive_data`` then dispatch the events, then
write ``data_to_send()`` once: everything the events caused goes out in one ``transport.write``.
Commands issued by tasks (start a call, send a message, acknowledge ...) are written at once
(:meth:`H2Protocol.flush`). Deferring them to one write per loop turn saves syscalls but makes the
two peers work in lock-step batches; writing at once lets the peer start on the first reply while we
produce the next, which measured ~1.8x faster for 64 unary calls in flight.

A server's replies are written with :meth:`H2Protocol.flush_reply`: the first in a loop turn goes out
at once, as above; the ones that more calls finishing in the same turn queue after it go out together
at the end of that turn, one ``transport.write`` instead of one per call. Under ghz (50 calls in flight
on one connection) this made ~10 replies per write instead of one and took the server's CPU per call
from 104.0 to 99.7 µs (bench/README.md, "ghz").

A ``H2ConnectionError`` from the core (the peer broke HTTP/2, RFC 9113 §5.4.1) flushes the GOAWAY the
core queued, fails every call and closes the connection with a lingering close: our side is shut
(FIN after the GOAWAY) and what the peer still sends is read and dropped until its EOF or for at most
:data:`LINGER_SECONDS`. Closing a socket with unread input makes the kernel reset the connection
(RFC 9293 §3.6.1), and a peer that gets the RST before it reads our GOAWAY never learns why: h2spec
saw "connection reset by peer" in place of the GOAWAY under load. Keepalive: a PING every ``keepalive_time``
seconds; if its ACK does not come within ``keepalive_timeout``, the connection is closed the same way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol, cast

from kitex_grpc.errors import KitexError
from kitex_grpc.protocol.h2_call import GrpcClientConnection, GrpcServerConnection, H2ConnectionError
from kitex_grpc.protocol.h2_events import Event, PingAcked
from kitex_grpc.transport.h2.config import H2Tuning
from kitex_grpc.transport.h2.status import connection_error
from kitex_grpc.transport.h2.wakeup import Wakeup
from kitex_grpc.transport.receive_buffer import ReceiveBufferProtocol

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger("kitex_grpc.transport.h2")

_KEEPALIVE_PING_PREFIX = b"\x00\x00\x00\x00"
# How long a connection closed for a protocol error keeps reading (and dropping) the peer's input:
# Go's HTTP/2 server closes a connection 1 s after its GOAWAY (goAwayTimeout, net/http h2_bundle.go).
LINGER_SECONDS = 1.0


class SendingCall(Protocol):
    """What :meth:`H2Protocol.flush_and_hold` reads of a client or server call."""

    stream_id: int
    ended: bool
    send_wakeup: Wakeup


class H2Protocol(ReceiveBufferProtocol):
    """Base of the client and server connection protocols (one instance per socket)."""

    def __init__(self, core: GrpcClientConnection | GrpcServerConnection, tuning: H2Tuning) -> None:
        self._core = core
        self._tuning = tuning
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._write_paused = False
        self._flush_soon = False
        self._resume_waiters: list[asyncio.Future[None]] = []
        self.closed = False  # the socket is gone (or going): no more I/O
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._ping_count = 0
        self._ping_data = b""
        # Set while at least one writer on this connection waits for the peer's window (backpressure
        # engaged), clear otherwise: a level, so a waiter cannot miss a writer that parked earlier.
        self.backpressure = asyncio.Event()
        self._parked_writers = 0

    async def park_writer(self, wakeup: Wakeup) -> None:
        """Wait on ``wakeup`` as a writer that the peer's flow-control window holds back."""
        self._parked_writers += 1
        self.backpressure.set()
        try:
            await wakeup.wait(self._loop)
        finally:
            self._parked_writers -= 1
            if not self._parked_writers:
                self.backpressure.clear()

    async def flush_and_hold(self, call: SendingCall, high_water: int) -> None:
        """Write what a stream's send queued, then hold its sender (backpressure) while more than
        ``high_water`` bytes of the stream wait for the peer's window, and while the socket's buffer
        is over asyncio's high-water mark."""
        self.flush()
        core = self._core
        sid = call.stream_id
        while core.pending_bytes(sid) > high_water and not call.ended:
            await self.park_writer(call.send_wakeup)
        if self._write_paused:
            await self.wait_writable()

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast("asyncio.Transport", transport)
        self.transport = transport
        transport.write(self._core.data_to_send())  # connection preface and our SETTINGS
        if self._tuning.keepalive_time is not None:
            self._keepalive_timer = self._loop.call_later(self._tuning.keepalive_time, self._send_keepalive)

    def data_received(self, data: bytes | memoryview) -> None:
        if self.closed:  # lingering after our GOAWAY: the input is dropped (see the module docstring)
            return
        try:
            # ``data`` views the shared receive buffer: the core copies what it keeps (h2_patched).
            events = self._core.receive_data(data)
        except H2ConnectionError as exc:
            self.on_connection_error(exc)
            self.abort(connection_error(f"HTTP/2 connection error: {exc.detail}"), linger=True)
            return
        if events:
            self.handle_events(events)
        self._write_now()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timers()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._wake_writers()
        self.on_connection_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    # -- writing ------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what commands queued (see the module docstring for why not once per loop turn)."""
        self._write_now()

    def flush_reply(self) -> None:
        """Write a call's reply: at once when it is the first write of this loop turn, otherwise at the
        turn's end together with the other replies the turn produces (see the module docstring)."""
        if self._flush_soon:  # a write at the end of this turn is due: it carries this reply too
            return
        self._write_now()
        self.flush_soon()  # writes nothing unless more replies are queued in this turn

    def flush_soon(self) -> None:
        """Write at the end of this loop turn: for WINDOW_UPDATEs after a message was taken, which
        are not urgent and coalesce well with the replies the same turn produces."""
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._write_now)

    def _write_now(self) -> None:
        self._flush_soon = False
        data = self._core.data_to_send()
        transport = self.transport
        # A transport closing on its own (a failed send, or the peer's EOF) reports connection_lost only
        # in a later loop turn; until then asyncio counts each write and logs a warning per write after
        # the fifth: calls finishing in between (a client dropping 50 calls in flight) would flood it.
        if data and transport is not None and not self.closed and not transport.is_closing():
            transport.write(data)

    async def wait_writable(self) -> None:
        """Wait while the socket's write buffer is over asyncio's high-water mark."""
        while self._write_paused and not self.closed:
            fut = self._loop.create_future()
            self._resume_waiters.append(fut)
            await fut

    def _wake_writers(self) -> None:
        waiters, self._resume_waiters = self._resume_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- closing ------------------------------------------------------------------------------------

    def abort(self, error: KitexError, *, linger: bool = False) -> None:
        """Fail every call with ``error``, send GOAWAY if none went out, and close the socket.

        With ``linger`` (the peer may still be sending), shut our side and drop the peer's input
        until its EOF or :data:`LINGER_SECONDS`, then close (see the module docstring).
        """
        if self.closed:
            return
        self.fail_all(error)
        self._core.close()  # a no-op if the core already queued GOAWAY (connection error)
        self._write_now()
        self.closed = True
        self._cancel_timers()
        self._wake_writers()
        transport = self.transport
        if transport is None:
            return
        if linger and transport.can_write_eof() and not transport.is_closing():
            transport.write_eof()  # the FIN follows what is buffered: the GOAWAY goes first
            self._linger_timer = self._loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._keepalive_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._keepalive_timer = self._ping_timer = None

    # -- keepalive ----------------------------------------------------------------------------------

    def _send_keepalive(self) -> None:
        self._keepalive_timer = None
        if self.closed:
            return
        self._ping_count += 1
        self._ping_data = _KEEPALIVE_PING_PREFIX + self._ping_count.to_bytes(4, "big")
        self._core.ping(self._ping_data)
        self._write_now()
        self._ping_timer = self._loop.call_later(self._tuning.keepalive_timeout, self._keepalive_expired)

    def _keepalive_expired(self) -> None:
        self._ping_timer = None
        timeout = self._tuning.keepalive_timeout
        self.abort(connection_error(f"keepalive ping not acknowledged within {timeout:g}s"))

    def on_ping_acked(self, ev: PingAcked) -> bool:
        """Handle a keepalive ACK; returns False for PINGs this base did not send."""
        if not self._ping_data or ev.data != self._ping_data:
            return False
        self._ping_data = b""
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        keepalive = self._tuning.keepalive_time
        if keepalive is not None and not self.closed:
            self._keepalive_timer = self._loop.call_later(keepalive, self._send_keepalive)
        return True

    # -- role hooks ---------------------------------------------------------------------------------

    def on_connection_error(self, exc: H2ConnectionError) -> None:
        """The peer broke HTTP/2 (or flooded); the GOAWAY is queued and the connection closes next."""
        logger.debug("HTTP/2 connection error from peer: %s", exc)

    def handle_events(self, events: Sequence[Event]) -> None:
        raise NotImplementedError

    def fail_all(self, error: KitexError) -> None:
        """End every call with ``error`` (the connection is going away)."""
        raise NotImplementedError

    def on_connection_lost(self, exc: Exception | None) -> None:
        raise NotImplementedError
