"""One client HTTP/2 connection: many calls multiplexed on it, each a :class:`ClientCall`.

A call ends (gRPC PROTOCOL-HTTP2.md "Responses") on trailers, on RST_STREAM, when the core rejects
the response, or with the connection. A graceful GOAWAY (RFC 9113 §6.8) ends only the calls above
its last stream id (UNAVAILABLE: never processed, safe to retry) and lets the others finish; the
connection then takes no new call and closes once the last one ended.

Stream limits: when the peer's MAX_CONCURRENT_STREAMS is reached (RFC 9113 §5.1.2) a new call waits
in a FIFO until a call ends or the peer raises the limit.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from kitex_grpc.errors import KitexError, from_status
from kitex_grpc.protocol.h2_call import GrpcClientConnection, StreamClosedError, TooManyStreamsError
from kitex_grpc.protocol.h2_events import (
    CallRejected,
    ConnectionTerminated,
    Event,
    HeadersReceived,
    MessageReceived,
    PingAcked,
    SettingsChanged,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from kitex_grpc.status import StatusCode
from kitex_grpc.transport.h2.config import H2Tuning
from kitex_grpc.transport.h2.protocol import H2Protocol
from kitex_grpc.transport.h2.status import connection_error, error_from_reset, error_from_trailers
from kitex_grpc.transport.h2.wakeup import Wakeup

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kitex_grpc.protocol.grpc_headers import Metadata
    from kitex_grpc.protocol.h2_events import MetadataTuple


class ConnectionUnusableError(Exception):
    """Internal: this connection takes no new call (GOAWAY or closed); dial another one."""


class ClientCall:
    """The client's view of one stream: received messages, the outcome, and wake-ups.

    ``messages`` holds ``(body, flow_controlled_length)``; the receive window of a message is handed
    back when the application takes it (``auto_ack`` calls, i.e. unary, hand it back on arrival).
    """

    __slots__ = (
        "auto_ack",
        "conn",
        "deadline_timer",
        "ended",
        "error",
        "header_sink",
        "headers",
        "messages",
        "recv_wakeup",
        "refused",
        "send_wakeup",
        "stream_id",
        "trailer_sink",
        "trailers",
    )

    def __init__(self, conn: ClientConnection, stream_id: int, auto_ack: bool) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.auto_ack = auto_ack
        self.messages: collections.deque[tuple[bytes, int]] = collections.deque()
        self.ended = False
        self.error: KitexError | None = None
        self.headers: MetadataTuple = ()
        self.trailers: MetadataTuple = ()
        # A stream's ri.response_headers / response_trailers, filled when they arrive.
        self.header_sink: list[tuple[str, str | bytes]] | None = None
        self.trailer_sink: list[tuple[str, str | bytes]] | None = None
        self.recv_wakeup = Wakeup()
        self.send_wakeup = Wakeup()
        self.deadline_timer: asyncio.TimerHandle | None = None
        self.refused = False  # RST_STREAM(REFUSED_STREAM): the server never processed it

    def wake_recv(self) -> None:
        self.recv_wakeup.wake()

    def wake_send(self) -> None:
        self.send_wakeup.wake()

    def finish(self, error: KitexError | None) -> None:
        if self.ended:
            return
        self.ended = True
        self.error = error
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
            self.deadline_timer = None
        self.wake_recv()
        self.wake_send()

    async def wait_recv(self) -> None:
        await self.recv_wakeup.wait(self.conn.loop)

    async def wait_send(self) -> None:
        await self.conn.park_writer(self.send_wakeup)

    @property
    def buffered(self) -> int:
        """Received bytes waiting in this call's queue."""
        return sum(len(body) for body, _ in self.messages)


class ClientConnection(H2Protocol):
    """The asyncio protocol of one client connection."""

    core: GrpcClientConnection

    def __init__(self, core: GrpcClientConnection, tuning: H2Tuning, address: str) -> None:
        super().__init__(core, tuning)
        self.core = core
        self.address = address
        self.loop = self._loop
        self.calls: dict[int, ClientCall] = {}
        self._stream_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.ready: asyncio.Future[None] = self._loop.create_future()  # the server's SETTINGS arrived
        self.closing = False  # GOAWAY sent or received: no new call
        self.goaway_received = asyncio.Event()

    @property
    def usable(self) -> bool:
        return not (self.closed or self.closing)

    # -- starting calls -----------------------------------------------------------------------------

    async def start_call(
        self,
        path: str,
        authority: str,
        *,
        metadata: Metadata,
        deadline: float | None,
        content_subtype: str,
        encoding: str | None,
        auto_ack: bool,
    ) -> ClientCall:
        """Open a stream (waiting for a free slot under the peer's limit); raises ConnectionUnusableError."""
        core = self.core
        woken = False  # a woken waiter goes ahead of the ones still queued behind it
        while True:
            if not self.usable:
                raise ConnectionUnusableError
            if core.available_streams > 0 and (woken or not self._stream_waiters):
                # grpc-timeout carries what is left when the headers go out (PROTOCOL-HTTP2.md).
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    sid = core.start_call(
                        path,
                        authority,
                        metadata=metadata,
                        timeout=timeout,
                        content_subtype=content_subtype,
                        encoding=encoding,
                    )
                except TooManyStreamsError:
                    pass
                else:
                    call = ClientCall(self, sid, auto_ack)
                    self.calls[sid] = call
                    return call
            await self._wait_for_stream()
            woken = True

    async def _wait_for_stream(self) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        self._stream_waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut in self._stream_waiters:
                self._stream_waiters.remove(fut)
            elif fut.done() and not fut.cancelled():
                self._release_streams()  # pass the slot this waiter was given to the next one
            raise

    def _release_streams(self) -> None:
        """Wake as many queued calls as there are free stream slots (all of them when unusable)."""
        waiters = self._stream_waiters
        if not waiters:
            return
        free = len(waiters) if not self.usable else self.core.available_streams
        while waiters and free > 0:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= 1

    # -- commands -----------------------------------------------------------------------------------

    def cancel_call(self, call: ClientCall, error: KitexError) -> None:
        """RST_STREAM(CANCEL) (gRPC PROTOCOL-HTTP2.md "Cancellation") and end the call locally."""
        if not call.ended:
            self.calls.pop(call.stream_id, None)
            self.core.reset(call.stream_id, ErrorCodes.CANCEL)
            call.finish(error)
            self.flush()
            self._call_ended()

    def acknowledge(self, call: ClientCall, n: int) -> None:
        if self.core.acknowledge_received(call.stream_id, n):
            self.flush_soon()

    # -- events -------------------------------------------------------------------------------------

    def handle_events(self, events: Sequence[Event]) -> None:
        calls = self.calls
        for ev in events:
            kind = type(ev)
            if kind is MessageReceived:
                assert isinstance(ev, MessageReceived)
                call = calls.get(ev.stream_id)
                if call is None:
                    self.core.acknowledge_received(ev.stream_id, ev.flow_controlled_length)
                elif call.auto_ack:
                    self.core.acknowledge_received(ev.stream_id, ev.flow_controlled_length)
                    call.messages.append((ev.data, 0))
                    call.wake_recv()
                else:
                    call.messages.append((ev.data, ev.flow_controlled_length))
                    call.wake_recv()
            elif kind is HeadersReceived:
                assert isinstance(ev, HeadersReceived)
                call = calls.get(ev.stream_id)
                if call is not None:
                    call.headers = ev.metadata
                    if call.header_sink is not None:
                        call.header_sink.extend(ev.metadata)
            elif kind is TrailersReceived:
                assert isinstance(ev, TrailersReceived)
                call = calls.pop(ev.stream_id, None)
                if call is not None:
                    call.trailers = ev.metadata
                    if call.trailer_sink is not None:
                        call.trailer_sink.extend(ev.metadata)
                    call.finish(None if ev.status is StatusCode.OK else error_from_trailers(ev))
                    self._call_ended()
            elif kind is WindowUpdated:
                assert isinstance(ev, WindowUpdated)
                call = calls.get(ev.stream_id)
                if call is not None:
                    call.wake_send()
            elif kind is StreamReset:
                assert isinstance(ev, StreamReset)
                call = calls.pop(ev.stream_id, None)
                if call is not None:
                    call.refused = ev.error_code == ErrorCodes.REFUSED_STREAM and not call.headers
                    call.finish(error_from_reset(ev.error_code))
                    self._call_ended()
            elif kind is CallRejected:
                assert isinstance(ev, CallRejected)
                call = calls.pop(ev.stream_id, None)
                if call is not None:
                    call.finish(_rejected(ev))
                    self._call_ended()
            elif kind is SettingsChanged:
                if not self.ready.done():
                    self.ready.set_result(None)
                self._release_streams()
            elif kind is PingAcked:
                assert isinstance(ev, PingAcked)
                self.on_ping_acked(ev)
            elif kind is ConnectionTerminated:
                assert isinstance(ev, ConnectionTerminated)
                self._on_goaway(ev)

    def _on_goaway(self, ev: ConnectionTerminated) -> None:
        self.closing = True
        self.goaway_received.set()
        if not ev.graceful:
            self.abort(connection_error(f"connection closed by peer with GOAWAY error code {ev.error_code}"))
            return
        # RFC 9113 §6.8: streams above last_stream_id were not processed; gRPC retries them elsewhere.
        for sid in [sid for sid in self.calls if sid > ev.last_stream_id]:
            call = self.calls.pop(sid)
            call.refused = not call.headers  # never processed: a unary call is sent again
            call.finish(connection_error("the server is going away (GOAWAY) and did not process this call"))
        self._release_streams()
        self._call_ended()

    def _call_ended(self) -> None:
        if self._stream_waiters:
            self._release_streams()
        if self.closing and not self.calls and not self.closed:
            self.close()

    def close(self) -> None:
        """Close the socket after sending GOAWAY; calls still open fail UNAVAILABLE."""
        self.closing = True
        self.abort(connection_error("connection closed"))

    # -- teardown -----------------------------------------------------------------------------------

    def fail_all(self, error: KitexError) -> None:
        self.closing = True
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.finish(error)
        self._release_streams()
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: nobody may be waiting any more

    def on_connection_lost(self, exc: Exception | None) -> None:
        detail = f"connection to {self.address} lost" + (f": {exc}" if exc else "")
        self.fail_all(connection_error(detail))

    @property
    def buffered_bytes(self) -> int:
        """Bytes held by this connection's structures: received queues and unsent outbound data."""
        return sum(call.buffered + self.core.pending_bytes(sid) for sid, call in self.calls.items())


def _rejected(ev: CallRejected) -> KitexError:
    return from_status(ev.status, ev.message)


__all__ = ["ClientCall", "ClientConnection", "ConnectionUnusableError", "StreamClosedError"]
