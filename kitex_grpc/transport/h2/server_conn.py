"""One server HTTP/2 connection: each gRPC call runs as its own task through the server's chain.

Routing follows Kitex: ``:path`` is split at the last ``/`` (method) and the service is looked up by
the name after the last ``.`` (the package is ignored). An unknown service or method is answered
with grpc-status 12 UNIMPLEMENTED, as grpcio and grpc-go do (Go Kitex answers 1 for an unknown method
and 20 for an unknown service, KITEX-WIRE.md §3; a standard gRPC client expects 12).

Response compression: the response is compressed with the request's ``grpc-encoding`` when the
client also lists it in ``grpc-accept-encoding`` (or lists nothing), otherwise it is sent as
identity; a handler may choose otherwise, and skip it per message, with :mod:`kitex_grpc.grpc_meta`.

Response metadata (:mod:`kitex_grpc.grpc_meta`): headers a handler set go out with the first reply
message, at ``send_header``, or, when the call ends before either, in a HEADERS frame of their own
ahead of the trailers (so the client still sees them as headers); trailers go out with the status,
on success and on failure.

Cancellation: RST_STREAM from the client, a call the core rejected, or the connection going away
cancels the call's task (the handler sees ``CancelledError``). A handler that is still running when
its deadline (``grpc-timeout``) passes is cancelled by the chain's server_timeout middleware and the
call ends DEADLINE_EXCEEDED.

Limits (README "Limits and defaults"; the knobs are :class:`~kitex_grpc.transport.h2.config.H2Tuning`
fields): the client preface and SETTINGS must arrive within ``handshake_timeout``; a connection with
no stream for ``idle_timeout`` is closed; PINGs follow grpc-go's enforcement policy, and SETTINGS and
RST_STREAM floods end the connection with GOAWAY ENHANCE_YOUR_CALM
(:mod:`kitex_grpc.protocol.h2_limits`); while the client does not read, reading stops after
``flood.max_control_replies`` control replies. Repeated events are logged through an
:class:`~kitex_grpc.transport.eventlog.EventLog`: a few lines a second at most, with counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from kitex_grpc import grpc_meta, metainfo
from kitex_grpc.address import format_address
from kitex_grpc.errors import (
    BizStatusError,
    KitexError,
    OverLimitError,
    RPCTimeoutError,
    StatusError,
    to_status,
)
from kitex_grpc.protocol.grpc_headers import GrpcHeaderError, split_method_path
from kitex_grpc.protocol.h2_call import GrpcServerConnection, H2ConnectionError, StreamClosedError
from kitex_grpc.protocol.h2_events import (
    CallRejected,
    CallStarted,
    ConnectionTerminated,
    Event,
    MessageReceived,
    PingAcked,
    PingReceived,
    SettingsChanged,
    StreamEnded,
    StreamRefused,
    StreamReset,
    WindowUpdated,
)
from kitex_grpc.protocol.h2_limits import FloodGuard
from kitex_grpc.status import StatusCode
from kitex_grpc.transport.call_head import CallHead
from kitex_grpc.transport.eventlog import EventLog
from kitex_grpc.transport.h2.config import H2Tuning
from kitex_grpc.transport.h2.protocol import H2Protocol
from kitex_grpc.transport.h2.server_call import ServerCall, ServerStreamIO
from kitex_grpc.transport.h2.status import connection_error
from kitex_grpc.transport.identity import caller_names

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kitex_grpc.rpcinfo import Metadata, RPCInfo
    from kitex_grpc.serviceinfo import MethodInfo
    from kitex_grpc.transport.base import CallDispatcher, MethodEntry

logger = logging.getLogger("kitex_grpc.transport.h2")
_EVENTS = EventLog(logger)  # for connections made without a transport's own log

_DRAIN_PING = b"kxdrain\x00"


class ServerConnection(H2Protocol):
    """The asyncio protocol of one server connection (accepted, or adopted from another server)."""

    core: GrpcServerConnection

    def __init__(
        self,
        core: GrpcServerConnection,
        tuning: H2Tuning,
        dispatcher: CallDispatcher,
        local_address: str,
        registry: set[ServerConnection],
        events: EventLog | None = None,
    ) -> None:
        super().__init__(core, tuning)
        self.core = core
        self._dispatcher = dispatcher
        self._registry = registry
        self._max_message_size = core.config.max_message_size
        self.local = local_address
        self.peer = ""
        self.calls: dict[int, ServerCall] = {}
        self._draining = False
        self._drain_acked = False
        self.done: asyncio.Future[None] = self._loop.create_future()  # set when the socket closed
        self._events = events or _EVENTS
        core.set_flood_guard(FloodGuard(tuning.ping, tuning.flood, time.monotonic))
        self._handshaken = False
        self._guard_timer: asyncio.TimerHandle | None = None  # handshake, then idle
        self._idle_mark = 0  # the last stream id seen by the idle check
        self._control_replies = 0  # answered while the client does not read
        self._reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = format_address(str(peer[0]), int(peer[1]))
        if not self.local:
            sock = transport.get_extra_info("sockname")
            if isinstance(sock, tuple) and len(sock) >= 2:
                self.local = format_address(str(sock[0]), int(sock[1]))
        self._registry.add(self)
        super().connection_made(transport)
        if self._tuning.handshake_timeout is not None:
            self._guard_timer = self._loop.call_later(self._tuning.handshake_timeout, self._handshake_expired)
        else:
            self._arm_idle()

    # -- events -------------------------------------------------------------------------------------

    def handle_events(self, events: Sequence[Event]) -> None:
        calls = self.calls
        replies = 0
        for ev in events:
            kind = type(ev)
            if kind is MessageReceived:
                assert isinstance(ev, MessageReceived)
                call = calls.get(ev.stream_id)
                if call is None:
                    self.core.acknowledge_received(ev.stream_id, ev.flow_controlled_length)
                else:
                    call.messages.append((ev.data, ev.flow_controlled_length, ev.compressed))
                    call.wake_recv()
            elif kind is CallStarted:
                assert isinstance(ev, CallStarted)
                self._start_call(ev)
            elif kind is StreamEnded:
                assert isinstance(ev, StreamEnded)
                call = calls.get(ev.stream_id)
                if call is not None:
                    call.eof = True
                    call.wake_recv()
            elif kind is WindowUpdated:
                assert isinstance(ev, WindowUpdated)
                call = calls.get(ev.stream_id)
                if call is not None:
                    call.wake_send()
            elif kind is StreamReset or kind is CallRejected:
                assert isinstance(ev, StreamReset | CallRejected)
                call = calls.pop(ev.stream_id, None)
                if call is not None:
                    call.end()
                    self._maybe_drained()
                elif isinstance(ev, CallRejected):  # refused before it started: say so once, here
                    self._events.warning(
                        "rejected_stream",
                        "h2 server: refused stream %d from %s: %s",
                        ev.stream_id,
                        self.peer,
                        ev.message,
                    )
            elif kind is PingAcked:
                assert isinstance(ev, PingAcked)
                if ev.data == _DRAIN_PING:
                    self._on_drain_acked()
                else:
                    self.on_ping_acked(ev)
            elif kind is ConnectionTerminated:
                assert isinstance(ev, ConnectionTerminated)
                if not ev.graceful:
                    self.abort(connection_error(f"client sent GOAWAY with error code {ev.error_code}"))
            elif kind is PingReceived:  # answered by the core (its flood guard checked it)
                replies += 1
            elif kind is SettingsChanged:  # acknowledged by the core (its flood guard checked it)
                replies += 1
                if not self._handshaken:
                    self._handshake_done()
            elif kind is StreamRefused:
                assert isinstance(ev, StreamRefused)
                replies += 1
                self._events.warning(
                    "refused_stream",
                    "h2 server: refused stream %d from %s: over MAX_CONCURRENT_STREAMS (%s)",
                    ev.stream_id,
                    self.peer,
                    self.core.config.max_concurrent_streams,
                )
        if replies and self._write_paused:
            self._throttle(replies)

    # -- limits -------------------------------------------------------------------------------------

    def on_connection_error(self, exc: H2ConnectionError) -> None:
        if exc.error_code == ErrorCodes.ENHANCE_YOUR_CALM:  # a flood, or a header list far too large
            self._events.warning(
                "enhance_your_calm",
                "h2 server: connection from %s closed with GOAWAY ENHANCE_YOUR_CALM: %s",
                self.peer,
                exc.detail,
            )
        else:
            super().on_connection_error(exc)

    def _throttle(self, replies: int) -> None:
        # The client does not read: after max_control_replies replies, stop reading until it does
        # (grpc-go stops its reader at 50 queued response frames, controlbuf.go).
        self._control_replies += replies
        if (
            self._control_replies >= self._tuning.flood.max_control_replies
            and not self._reading_paused
            and self.transport is not None
        ):
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._control_replies = 0
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def _handshake_done(self) -> None:
        self._handshaken = True
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None
        self._arm_idle()

    def _handshake_expired(self) -> None:
        self._guard_timer = None
        if self.closed or self._handshaken:
            return
        self._events.warning(
            "handshake_timeout",
            "h2 server: connection from %s closed: no HTTP/2 preface and SETTINGS within %gs",
            self.peer,
            self._tuning.handshake_timeout,
        )
        self.abort(connection_error("HTTP/2 handshake timed out"))

    def _arm_idle(self) -> None:
        timeout = self._tuning.idle_timeout
        if timeout is not None and not self.closed:
            self._idle_mark = self.core.highest_inbound_stream_id
            self._guard_timer = self._loop.call_later(timeout, self._idle_check)

    def _idle_check(self) -> None:
        # No stream open and none opened since the previous check: idle for at least idle_timeout
        # (grpc-go MaxConnectionIdle). One timer per period, nothing per call.
        self._guard_timer = None
        if self.closed:
            return
        if not self.calls and self.core.highest_inbound_stream_id == self._idle_mark:
            logger.debug("h2 server: closing idle connection from %s", self.peer)
            self.abort(connection_error("connection idle"))
            return
        self._arm_idle()

    def _start_call(self, ev: CallStarted) -> None:
        sid = ev.stream_id
        path = ev.path
        service_name, method_name = split_method_path(path)
        entry = self._dispatcher.lookup(service_name, method_name) if service_name else None
        if entry is None:
            with contextlib.suppress(StreamClosedError):
                self.core.send_trailers(sid, StatusCode.UNIMPLEMENTED, f"unknown service or method {path}")
            return
        encoding = ev.encoding
        if encoding is not None and ev.accept_encoding and encoding not in ev.accept_encoding:
            encoding = None
        call = ServerCall(sid, encoding, self, ev)
        self.calls[sid] = call
        call.task = self._loop.create_task(self._serve(call, entry, ev))

    # -- running a call -----------------------------------------------------------------------------

    async def _serve(self, call: ServerCall, entry: MethodEntry, ev: CallStarted) -> None:
        dispatcher = self._dispatcher
        method = entry.method
        head: CallHead | None = None
        grpc_meta.bind(call)
        try:
            metadata: Metadata = list(ev.metadata)
            deadline = None if ev.timeout is None else time.monotonic() + ev.timeout
            transient, persistent = metainfo.from_http2_headers(metadata)
            caller_service, caller_method = caller_names(metadata)
            head = CallHead(
                entry,
                metadata,
                transient,
                persistent,
                deadline,
                self.peer,
                self.local,
                caller_service,
                caller_method,
            )
            body: bytes | None = None
            if method.mode.is_streaming:
                await dispatcher.serve_stream(head, ServerStreamIO(self, call, method))
            else:
                # The RPCInfo is built once the request is read (serve_unary): a request that never
                # comes, or does not decode, ends the call without running the chain.
                request = await self._read_request(call, method, deadline)
                body = method.serialize_response(await dispatcher.serve_unary(head, request))
            assert head.ri is not None  # filled by serve_*
            self._reply(call, body, head.ri)
        except asyncio.CancelledError:
            # Reset by the client, the connection went away, or the drain ran out of time.
            if not call.ended:
                call.ended = True
                self.core.reset(call.stream_id, ErrorCodes.CANCEL)
                self.flush()
        except Exception as exc:
            self._reply_error(call, exc, None if head is None else head.ri)
        finally:
            if self.calls.get(call.stream_id) is call:
                del self.calls[call.stream_id]
            # The task's context holds the call (grpc_meta.bind) and the call its task: without this
            # the finished task lives in a cycle until the cyclic GC runs (7 us a call, measured).
            call.task = None
            self._maybe_drained()

    async def _read_request(self, call: ServerCall, method: MethodInfo, deadline: float | None) -> Any:
        """The request of a unary call: the first message (grpc-go does not wait for END_STREAM)."""
        messages = call.messages
        if not messages and not call.eof:
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                async with asyncio.timeout(remaining):
                    while not messages and not call.eof:
                        if call.ended:
                            raise asyncio.CancelledError
                        await self.wait_recv(call)
            except TimeoutError:
                raise RPCTimeoutError("deadline passed while reading the request") from None
        if not messages:
            raise StatusError(StatusCode.INTERNAL, "grpc: no request message in a unary call")
        body, held, call.last_compressed = messages.popleft()
        self.acknowledge(call, held)
        try:
            return method.deserialize_request(body)
        except Exception as exc:
            raise StatusError(StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}") from exc

    async def wait_recv(self, call: ServerCall) -> None:
        await call.recv_wakeup.wait(self._loop)

    def acknowledge(self, call: ServerCall, n: int) -> None:
        if n and self.core.acknowledge_received(call.stream_id, n):
            self.flush_soon()

    def ensure_headers(self, call: ServerCall, *, explicit: bool = False) -> None:
        """Send the response headers if they are still due: now when the call compresses, carries
        handler metadata or ``explicit`` (send_header); otherwise the core's first message sends
        its plain headers."""
        if not call.headers_sent:
            call.headers_sent = True
            if call.encoding is not None or call.header_md or explicit:
                self.core.send_headers(call.stream_id, metadata=call.header_md or (), encoding=call.encoding)

    def check_size(self, body: bytes) -> None:
        if len(body) > self._max_message_size:
            raise OverLimitError(
                f"grpc: trying to send message larger than max ({len(body)} vs. {self._max_message_size})"
            )

    def _reply(self, call: ServerCall, body: bytes | None, ri: RPCInfo) -> None:
        """Success: the reply (unary) and OK trailers carrying ``ri.response_metadata``."""
        if call.ended:
            return
        if body is not None:
            self.check_size(body)  # raises into _serve's error path
        core = self.core
        sid = call.stream_id
        try:
            if body is not None or call.header_md:
                self.ensure_headers(call)
            if body is not None:
                core.send_message(sid, body, compressed=call.next_compressed())
            try:
                core.send_trailers(sid, StatusCode.OK, metadata=ri.response_metadata)
            except GrpcHeaderError as exc:
                core.send_trailers(sid, StatusCode.INTERNAL, f"invalid trailing metadata: {exc.detail}")
        except StreamClosedError:
            pass
        call.ended = True
        self.flush_reply()

    def _reply_error(self, call: ServerCall, exc: Exception, ri: RPCInfo | None = None) -> None:
        if call.ended:
            return
        metadata: list[tuple[str, str]] = []
        if isinstance(exc, BizStatusError):
            code: StatusCode | int = exc.grpc_status
            message = exc.message
            metadata = exc.grpc_trailers()
        else:
            if not isinstance(exc, KitexError):
                logger.warning("h2 call %d failed in the transport", call.stream_id, exc_info=exc)
            code, message = to_status(exc)
        trailers: Metadata = [*metadata, *ri.response_metadata] if ri is not None else list(metadata)
        call.ended = True
        sid = call.stream_id
        try:
            if call.header_md:
                self.ensure_headers(call)
            try:  # grpc_meta.set_trailer's trailers go out on failure too
                self.core.send_trailers(sid, code, message, metadata=trailers)
            except GrpcHeaderError as exc:
                self.core.send_trailers(sid, StatusCode.INTERNAL, f"invalid trailing metadata: {exc.detail}")
        except StreamClosedError:
            pass
        except Exception as failure:  # never leave the stream open
            self._end_internal(call, failure)
        self.flush_reply()

    def _end_internal(self, call: ServerCall, failure: Exception) -> None:
        """Sending a reply failed: end the stream with INTERNAL, as trailers or else RST_STREAM.

        Whatever failed, the caller must not be left waiting on an open stream; a plain INTERNAL
        status (no metadata) is tried first, then RST_STREAM(INTERNAL_ERROR), which a gRPC client
        reports as INTERNAL (PROTOCOL-HTTP2.md "Errors").
        """
        logger.error(
            "h2 call %d from %s: cannot send its status (%s); ending it with INTERNAL",
            call.stream_id,
            self.peer,
            failure,
        )
        call.ended = True
        try:
            self.core.send_trailers(
                call.stream_id, StatusCode.INTERNAL, "grpc: the server failed to send the status"
            )
        except StreamClosedError:
            pass
        except Exception:  # the last resort: RST_STREAM
            self.core.reset(call.stream_id, ErrorCodes.INTERNAL_ERROR)

    # -- shutdown -----------------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Graceful shutdown, grpc-go style: GOAWAY(max id) + PING; on its ACK a second GOAWAY with
        the last stream really received (RFC 9113 §6.8); close once the calls are done."""
        if self.closed or self._draining:
            return
        self._draining = True
        self.core.close(graceful=True)
        self.core.ping(_DRAIN_PING)
        self._write_now()

    def _on_drain_acked(self) -> None:
        if self._drain_acked or self.closed:
            return
        self._drain_acked = True
        self.core.close(graceful=True, last_stream_id=self.core.highest_inbound_stream_id)
        self._write_now()
        self._maybe_drained()

    def _maybe_drained(self) -> None:
        if self._drain_acked and not self.calls and not self.closed:
            self.abort(connection_error("server shut down"))

    def force_close(self) -> list[asyncio.Task[None]]:
        """The exit wait time ran out: cancel what still runs and close; returns the tasks to await."""
        tasks = [call.task for call in self.calls.values() if call.task is not None]
        self.abort(connection_error("server shut down before the call finished"))
        return tasks

    # -- teardown -----------------------------------------------------------------------------------

    def fail_all(self, error: KitexError) -> None:
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.end()

    def on_connection_lost(self, exc: Exception | None) -> None:
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None
        self.fail_all(connection_error("connection lost"))
        self._registry.discard(self)
        if not self.done.done():
            self.done.set_result(None)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held by this connection's structures: request queues and unsent responses."""
        return sum(
            sum(len(b) for b, _, _ in call.messages) + self.core.pending_bytes(sid)
            for sid, call in self.calls.items()
        )
