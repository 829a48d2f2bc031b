"""Sans-IO gRPC over HTTP/2: :class:`GrpcClientConnection` and :class:`GrpcServerConnection`.

Each wraps one h2 connection, made by :mod:`~kitex_grpc.protocol.h2_patched` (the one module that
touches h2's internals; the cores use h2's public API only). Bytes from the socket go to ``receive_data`` and come
back as :mod:`~kitex_grpc.protocol.h2_events`; commands (``start_call``, ``send_message``,
``send_trailers``, ``reset``, ``ping``, ``close`` ...) queue frames that ``data_to_send`` hands out.
Nothing here does I/O, sleeps or keeps time.

Flow control, outbound: ``send_message`` sends what the peer's window allows now and keeps the rest
per stream, behind which END_STREAM or the trailers wait. ``pending_bytes(stream_id)`` says how much
is kept; when the peer opens its window the core sends more and reports :class:`WindowUpdated` with
the new pending count. A shell applies backpressure by not sending more while ``pending_bytes`` is
above its high-water mark.

Flow control, inbound: the bytes of a delivered message stay charged to the receive window until the
shell calls ``acknowledge_received(stream_id, event.flow_controlled_length)``, so a slow reader slows
the writer. Bytes of a message still being received are charged the same way while the reader is
behind, and handed back at once while it is caught up (nothing unacknowledged on the stream): a
message larger than the window cannot deadlock, and a stream never buffers more than one
``max_message_size`` message plus one window. DATA padding is handed back at once. Reset and rejected
calls release what they held. Acknowledgements of a live call reach h2 in batches (h2 sends a
WINDOW_UPDATE only once half a window was consumed anyway): at most a quarter of the stream window
(32 KiB at most) per stream and a quarter of the connection window in all are kept back, and only
while the peer can still send a whole batch; a call's remainder is handed over when the call ends.

The receive side of each call follows a transition table (:data:`CLIENT_RECV_TRANSITIONS`,
:data:`SERVER_RECV_TRANSITIONS`); a pair not in the table is a gRPC violation by the peer, which ends
that call with :class:`CallRejected` and keeps the connection.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import h2.stream
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from kitex_grpc.errors import KitexError, ProtocolError
from kitex_grpc.protocol import grpc_headers as gh
from kitex_grpc.protocol import h2_patched
from kitex_grpc.protocol.grpc_compression import parse_accept_encoding, parse_encoding
from kitex_grpc.protocol.grpc_framing import (
    ACCEPT_ENCODING,
    DEFAULT_MAX_MESSAGE_SIZE,
    PREFIX_SIZE,
    SUPPORTED_ENCODINGS,
    GrpcFramingError,
    MessageDecoder,
    compress,
    decompress,
    encode_message,
)
from kitex_grpc.protocol.h2_events import (
    CallRejected,
    CallStarted,
    ConnectionTerminated,
    Event,
    HeadersReceived,
    MessageReceived,
    PingAcked,
    PingReceived,
    SettingsChanged,
    StreamEnded,
    StreamRefused,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from kitex_grpc.protocol.h2_limits import FloodGuard
from kitex_grpc.status import StatusCode

__all__ = [
    "CLIENT_RECV_TRANSITIONS",
    "SERVER_RECV_TRANSITIONS",
    "CallInput",
    "CallState",
    "ConnectionClosedError",
    "GrpcClientConnection",
    "GrpcConnectionConfig",
    "GrpcServerConnection",
    "H2ConnectionError",
    "StreamClosedError",
    "TooManyStreamsError",
]

_MAX_WINDOW = 2**31 - 1
_MAX_STREAM_ID = 2**31 - 1


@dataclass(frozen=True, kw_only=True, slots=True)
class GrpcConnectionConfig:
    """Tuning of one connection core; defaults are Kitex's (KITEX-WIRE.md §3 "Other HTTP/2 defaults").

    ``max_concurrent_streams`` is advertised by a server (``None``: unlimited, as grpc-go). A stream
    over it is refused alone with RST_STREAM(REFUSED_STREAM) and reported as :class:`StreamRefused`.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    initial_window_size: int = 65_535
    initial_connection_window_size: int = 65_535
    max_frame_size: int = 16_384
    max_header_list_size: int = 16 * 1024 * 1024
    max_concurrent_streams: int | None = None
    scheme: str = "http"
    user_agent: str = gh.DEFAULT_USER_AGENT
    # h2's checks of received header fields (characters, pseudo-header rules). Turning them off is
    # faster and what grpclib does, but lets a peer hand us headers HTTP/2 forbids.
    validate_inbound_headers: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.max_message_size <= 0xFFFFFFFF:
            raise ValueError("max_message_size must be in [0, 2**32)")
        if not 0 <= self.initial_window_size <= _MAX_WINDOW:
            raise ValueError("initial_window_size must be in [0, 2**31)")
        if not 65_535 <= self.initial_connection_window_size <= _MAX_WINDOW:
            raise ValueError("initial_connection_window_size must be in [65535, 2**31)")
        if not 16_384 <= self.max_frame_size <= 16_777_215:
            raise ValueError("max_frame_size must be in [16384, 16777215]")
        if self.max_header_list_size <= 0:
            raise ValueError("max_header_list_size must be positive")
        if self.max_concurrent_streams is not None and self.max_concurrent_streams < 0:
            raise ValueError("max_concurrent_streams must not be negative")
        if self.scheme not in ("http", "https"):
            raise ValueError("scheme must be 'http' or 'https'")


class H2ConnectionError(ProtocolError):
    """The peer broke HTTP/2; ``error_code`` went out in a GOAWAY. Flush ``data_to_send`` and close."""

    def __init__(self, detail: str, error_code: int) -> None:
        super().__init__(detail, grpc_status=StatusCode.UNAVAILABLE)
        self.error_code = error_code


class StreamClosedError(KitexError):
    """A command named a call that is over (finished, reset or rejected) or never existed."""

    basic_message = "stream closed"
    grpc_status = StatusCode.CANCELLED


class ConnectionClosedError(KitexError):
    """A new call on a connection that sent or received GOAWAY."""

    basic_message = "connection closed"
    grpc_status = StatusCode.UNAVAILABLE


class TooManyStreamsError(KitexError):
    """The peer's MAX_CONCURRENT_STREAMS is reached; wait for a call to end (``available_streams``)."""

    basic_message = "too many concurrent streams"
    grpc_status = StatusCode.UNAVAILABLE


class CallState(enum.Enum):
    """The receive side of a call."""

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is Python code

    AWAIT_HEADERS = "await-headers"  # client: nothing from the server yet
    OPEN = "open"
    HALF_CLOSED = "half-closed"  # server: the client ended its side
    CLOSED = "closed"


class CallInput(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's own hash is Python code

    HEADERS = "headers"
    DATA = "data"
    TRAILERS = "trailers"
    END = "end"  # END_STREAM


CLIENT_RECV_TRANSITIONS: dict[tuple[CallState, CallInput], CallState] = {
    (CallState.AWAIT_HEADERS, CallInput.HEADERS): CallState.OPEN,
    (CallState.AWAIT_HEADERS, CallInput.TRAILERS): CallState.CLOSED,  # trailers-only
    (CallState.OPEN, CallInput.DATA): CallState.OPEN,
    (CallState.OPEN, CallInput.TRAILERS): CallState.CLOSED,
    (CallState.CLOSED, CallInput.END): CallState.CLOSED,  # the END_STREAM that carried the trailers
}
SERVER_RECV_TRANSITIONS: dict[tuple[CallState, CallInput], CallState] = {
    (CallState.OPEN, CallInput.DATA): CallState.OPEN,
    (CallState.OPEN, CallInput.END): CallState.HALF_CLOSED,
}


_OVERSIZED_HEADERS = "peer header list size exceeded limit"  # grpc-go's words
_ACK_BATCH_MAX = 32 * 1024  # acknowledged bytes of one stream handed to h2 at once, at most


class _CallError(Exception):
    """Internal: the peer broke gRPC on one call."""

    def __init__(self, status: StatusCode, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = http_status


class _Call:
    """Per-stream state. Outbound data not yet allowed by flow control waits in ``pending``."""

    __slots__ = (
        "content_subtype",
        "decoder",
        "end_after_flush",
        "headers_sent",
        "held",
        "local_done",
        "partial_held",
        "pending",
        "pending_size",
        "recv_encoding",
        "reset_after_trailers",
        "send_encoding",
        "state",
        "stream_id",
        "trailers_after_flush",
    )

    def __init__(self, stream_id: int, state: CallState, max_message_size: int) -> None:
        self.stream_id = stream_id
        self.state = state
        self.decoder = MessageDecoder(max_message_size)
        self.recv_encoding: str | None = None
        self.send_encoding: str | None = None
        self.content_subtype = ""
        self.pending: deque[memoryview] = deque()
        self.pending_size = 0
        self.end_after_flush = False
        self.trailers_after_flush: list[gh.Header] | None = None
        self.reset_after_trailers = False
        self.headers_sent = False
        self.local_done = False  # END_STREAM (or trailers) queued: no more sends
        self.held = 0  # received bytes of delivered messages not yet acknowledged by the shell
        self.partial_held = 0  # received bytes of the incomplete message that are still charged


class _GrpcConnection:
    """What client and server cores share: h2 set-up, data, flow control, ping, GOAWAY."""

    _client_side = True
    _transitions: dict[tuple[CallState, CallInput], CallState] = CLIENT_RECV_TRANSITIONS

    def __init__(self, config: GrpcConnectionConfig | None = None) -> None:
        self.config = config = config or GrpcConnectionConfig()
        self._conn = conn = h2_patched.H2_CONNECTION_CLASS(
            h2.config.H2Configuration(
                client_side=self._client_side,
                header_encoding=None,
                # Header lists are built and validated by grpc_headers; skip h2's second pass.
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=config.validate_inbound_headers,
            )
        )
        settings: dict[SettingCodes, int] = {
            SettingCodes.INITIAL_WINDOW_SIZE: config.initial_window_size,
            SettingCodes.MAX_FRAME_SIZE: config.max_frame_size,
            SettingCodes.MAX_HEADER_LIST_SIZE: config.max_header_list_size,
            SettingCodes.MAX_CONCURRENT_STREAMS: (
                _MAX_STREAM_ID if config.max_concurrent_streams is None else config.max_concurrent_streams
            ),
        }
        if self._client_side:
            settings[SettingCodes.ENABLE_PUSH] = 0
        # Replacing local_settings before initiate_connection makes these the values of the first
        # SETTINGS frame (grpclib does the same); the few derived fields are set by hand.
        conn.local_settings = h2.settings.Settings(client=self._client_side, initial_values=settings)
        conn.max_inbound_frame_size = config.max_frame_size
        conn.set_header_list_limit(config.max_header_list_size)
        conn.initiate_connection()
        if config.initial_connection_window_size > 65_535:
            conn.increment_flow_control_window(config.initial_connection_window_size - 65_535)
        self._calls: dict[int, _Call] = {}
        self._blocked: dict[int, _Call] = {}  # calls with pending outbound data, in arrival order
        # Acknowledged bytes not yet handed to h2, by stream (see the module docstring).
        self._deferred_acks: dict[int, int] = {}
        self._deferred_total = 0
        self._ack_batch = min(_ACK_BATCH_MAX, config.initial_window_size // 4)
        self._ack_total_limit = config.initial_connection_window_size // 4
        self._out = bytearray()  # frames written around h2 (graceful GOAWAY), ahead of h2's buffer
        self._goaway_sent = False
        self._goaway_received = False
        self._last_stream_id = _MAX_STREAM_ID  # highest stream the peer will still process
        self._local_last_stream_id = _MAX_STREAM_ID  # highest stream we said (GOAWAY) we would process

    # -- bytes in / bytes out ------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the socket, in order; empty when there is nothing."""
        data = self._conn.data_to_send()
        if self._out:
            data = bytes(self._out) + data
            self._out.clear()
        return data

    def receive_data(self, data: bytes | memoryview) -> list[Event]:
        """Feed bytes read from the socket; returns what happened, in order.

        Raises :class:`H2ConnectionError` when the peer broke HTTP/2: a GOAWAY is queued, flush
        ``data_to_send`` and close the transport.
        """
        try:
            h2_events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
            raise H2ConnectionError(str(exc) or type(exc).__name__, int(code)) from exc
        if self._conn.calmed is not None:
            reason = self._conn.calmed
            self.close(ErrorCodes.ENHANCE_YOUR_CALM, additional_data=reason)
            raise H2ConnectionError(reason.decode("ascii", "replace"), ErrorCodes.ENHANCE_YOUR_CALM)
        events: list[Event] = []
        window_changed = False
        for ev in h2_events:
            # The common events first: this loop is the hot path.
            if isinstance(ev, h2.events.DataReceived):
                self._on_data(ev, events)
            elif isinstance(ev, h2.events.WindowUpdated):
                window_changed = True
            elif isinstance(ev, h2.events.StreamEnded):
                self._on_stream_ended(ev.stream_id, events)
            elif isinstance(ev, h2.events.StreamReset):
                self._on_stream_reset(ev, events)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                window_changed = True
                self._on_settings(ev, events)
            elif isinstance(ev, h2.events.PingAckReceived):
                events.append(PingAcked(data=ev.ping_data))
            elif isinstance(ev, h2.events.PingReceived):
                events.append(PingReceived(data=ev.ping_data))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self._on_goaway(ev, events)
            else:
                self._on_other(ev, events)
        if window_changed and self._blocked:
            self._flush_blocked(events)
        if self._conn.refused_streams:
            events.extend(StreamRefused(stream_id=sid) for sid in self._conn.refused_streams)
            self._conn.refused_streams.clear()
        return events

    # -- commands shared by both roles -------------------------------------------------------------

    def send_message(self, stream_id: int, body: bytes, *, compressed: bool = False) -> None:
        """Frame ``body`` (compressed with the call's encoding when ``compressed``) and send or keep it."""
        call = self._writable(stream_id)
        self._before_message(call)
        self._conn.writes += 1
        if compressed:
            if call.send_encoding is None:
                raise ValueError("compressed=True needs an encoding on this call")
            body = compress(call.send_encoding, body)
        self._queue_data(call, encode_message(body, compressed), end=False)

    def reset(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        """Send RST_STREAM and forget the call; a no-op for a call that is already over."""
        call = self._forget(stream_id)
        if call is None:
            return
        self._drop(call)
        self._safe_reset(stream_id, error_code)

    def acknowledge_received(self, stream_id: int, n: int) -> bool:
        """The shell consumed ``n`` flow-controlled bytes (``MessageReceived.flow_controlled_length``).

        Returns whether h2 was told, so that a WINDOW_UPDATE may be waiting in ``data_to_send``.
        """
        if n <= 0:
            return False
        call = self._calls.get(stream_id)
        if call is not None:
            call.held -= min(n, call.held)
            if not call.held and call.partial_held:
                # The reader caught up: release the message in progress so it can complete.
                n += call.partial_held
                call.partial_held = 0
            deferred = self._deferred_acks
            previous = deferred.get(stream_id, 0)
            if previous + n < self._ack_batch:
                if (
                    self._deferred_total + n < self._ack_total_limit
                    and self._peer_window(stream_id) >= self._ack_batch
                ):
                    deferred[stream_id] = previous + n
                    self._deferred_total += n
                    return False
                # The peer is running out of window (or we hold too much): hand everything back, so
                # h2 can send its WINDOW_UPDATEs (it does at once for an exhausted window).
                self._hand_back_deferred()
                previous = 0
            elif previous:
                del deferred[stream_id]
                self._deferred_total -= previous
            n += previous
        self._hand_back(stream_id, n)
        return True

    def _peer_window(self, stream_id: int) -> int:
        """What the peer may still send on ``stream_id`` (stream and connection window)."""
        try:
            return int(self._conn.remote_flow_control_window(stream_id))
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            return 0

    def _hand_back_deferred(self) -> None:
        for sid, owed in self._deferred_acks.items():
            self._hand_back(sid, owed)
        self._deferred_acks.clear()
        self._deferred_total = 0

    def _hand_back(self, stream_id: int, n: int) -> None:
        # h2 credits the connection window even for a closed stream, and caps both at their maximum.
        with contextlib.suppress(h2.exceptions.NoSuchStreamError):
            self._conn.acknowledge_received_data(n, stream_id)

    def _forget(self, stream_id: int) -> _Call | None:
        """Remove a call from the table, handing its deferred acknowledgements to h2."""
        owed = self._deferred_acks.pop(stream_id, 0)
        if owed:
            self._deferred_total -= owed
            self._hand_back(stream_id, owed)
        return self._calls.pop(stream_id, None)

    def pending_bytes(self, stream_id: int) -> int:
        """Outbound bytes of ``stream_id`` waiting for the peer's window (0 for unknown streams)."""
        call = self._calls.get(stream_id)
        return 0 if call is None else call.pending_size

    def send_window(self, stream_id: int) -> int:
        """How many bytes could be sent on ``stream_id`` right now (stream and connection window)."""
        try:
            return int(self._conn.local_flow_control_window(stream_id))
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            return 0

    def ping(self, data: bytes) -> None:
        """Send a PING with 8 bytes of opaque ``data``; :class:`PingAcked` reports the answer."""
        if len(data) != 8:
            raise ValueError("PING data must be exactly 8 bytes")
        self._conn.ping(data)

    def close(
        self,
        error_code: int = ErrorCodes.NO_ERROR,
        *,
        last_stream_id: int | None = None,
        additional_data: bytes = b"",
        graceful: bool = False,
    ) -> None:
        """Send GOAWAY.

        ``graceful=True`` (server shutdown, grpc-go style): calls up to ``last_stream_id`` (default:
        every stream id, i.e. all calls the peer has in flight) go on, no new call is accepted. Call
        it again without ``graceful`` (or just close the socket) once the calls have drained. Without
        ``graceful`` the connection is done: flush ``data_to_send`` and close the transport.
        """
        if graceful:
            last = _MAX_STREAM_ID if last_stream_id is None else last_stream_id
            # h2 would refuse every frame after its own GOAWAY, so this one is written around it, after
            # whatever h2 has already queued.
            frame = GoAwayFrame(
                stream_id=0, last_stream_id=last, error_code=int(error_code), additional_data=additional_data
            )
            self._out += self._conn.data_to_send()
            self._out += frame.serialize()
            self._goaway_sent = True
            self._local_last_stream_id = min(self._local_last_stream_id, last)
            return
        self._goaway_sent = True
        with contextlib.suppress(h2.exceptions.ProtocolError):  # already closed: nothing may be sent
            self._conn.close_connection(int(error_code), additional_data or None, last_stream_id)

    # -- state queries -----------------------------------------------------------------------------

    @property
    def open_calls(self) -> int:
        """Calls this core still tracks."""
        return len(self._calls)

    @property
    def closing(self) -> bool:
        """GOAWAY was sent or received: no new calls."""
        return self._goaway_sent or self._goaway_received

    @property
    def highest_inbound_stream_id(self) -> int:
        """The last stream the peer opened (for a server's final GOAWAY)."""
        return int(self._conn.highest_inbound_stream_id)

    @property
    def peer_max_concurrent_streams(self) -> int:
        return int(self._conn.remote_settings.max_concurrent_streams)

    # -- internals: sending ------------------------------------------------------------------------

    def _writable(self, stream_id: int) -> _Call:
        call = self._calls.get(stream_id)
        if call is None or call.local_done:
            raise StreamClosedError(f"stream {stream_id} cannot send")
        return call

    def _before_message(self, call: _Call) -> None:
        """Role hook before a message is queued (a server sends its headers first)."""

    def _queue_data(self, call: _Call, data: bytes, *, end: bool) -> None:
        if not call.pending_size:
            # Fast path: nothing waits, the window and frame size allow it, send now.
            size = len(data)
            conn = self._conn
            sid = call.stream_id
            if size <= conn.max_outbound_frame_size and size <= conn.local_flow_control_window(sid):
                conn.send_data(sid, data, end_stream=end)
                return
        if data:
            call.pending.append(memoryview(data))
            call.pending_size += len(data)
        if end:
            call.end_after_flush = True
        self._flush(call)
        if call.pending_size:
            self._blocked[call.stream_id] = call

    def _flush(self, call: _Call) -> None:
        """Send as much of ``call.pending`` as the windows allow, then what waits behind it."""
        conn = self._conn
        sid = call.stream_id
        pending = call.pending
        while pending:
            window = conn.local_flow_control_window(sid)
            if window <= 0:
                return
            chunk = pending[0]
            n = min(len(chunk), window, conn.max_outbound_frame_size)
            if n == len(chunk):
                pending.popleft()
                last = not pending
                conn.send_data(sid, chunk, end_stream=last and call.end_after_flush)
            else:
                pending[0] = chunk[n:]
                conn.send_data(sid, chunk[:n])
                last = False
            call.pending_size -= n
            if last and call.end_after_flush:
                call.end_after_flush = False
                return
        if call.end_after_flush:  # an END_STREAM queued with no data behind it
            call.end_after_flush = False
            conn.end_stream(sid)
        if call.trailers_after_flush is not None:
            trailers, call.trailers_after_flush = call.trailers_after_flush, None
            self._send_trailer_headers(call, trailers)

    def _send_trailer_headers(self, call: _Call, trailers: list[gh.Header]) -> None:
        raise NotImplementedError  # pragma: no cover - server only

    def _flush_blocked(self, events: list[Event]) -> None:
        for sid, call in list(self._blocked.items()):
            before = call.pending_size
            try:
                self._flush(call)
            except h2.exceptions.StreamClosedError:
                self._blocked.pop(sid, None)
                continue
            if call.pending_size != before:
                # DATA that waited for the window is a write too: grpc-go's onEachWrite resets the PING
                # strikes per DATA frame, and its client's BDP probe follows each batch it reads.
                self._conn.writes += 1
                events.append(WindowUpdated(stream_id=sid, pending=call.pending_size))
            if not call.pending_size:
                self._blocked.pop(sid, None)
                self._after_flushed(call)

    def _after_flushed(self, call: _Call) -> None:
        """Role hook: ``call``'s last pending bytes (and whatever waited behind them) went out."""

    def _drop(self, call: _Call) -> None:
        """Forget outbound data and release held receive window of a call that ends abnormally."""
        self._blocked.pop(call.stream_id, None)
        call.pending.clear()
        call.pending_size = 0
        call.local_done = True
        call.state = CallState.CLOSED
        held = call.held + call.partial_held
        if held:
            call.held = call.partial_held = 0
            self._conn.acknowledge_received_data(held, call.stream_id)

    def _safe_reset(self, stream_id: int, error_code: int) -> None:
        # A stream (or connection) that is already closed needs no reset.
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._conn.reset_stream(stream_id, error_code)

    # -- internals: receiving ----------------------------------------------------------------------

    def _step(self, call: _Call, event: CallInput) -> None:
        try:
            call.state = self._transitions[(call.state, event)]
        except KeyError:
            raise _CallError(
                StatusCode.INTERNAL, f"unexpected {event.value} in call state {call.state.value}"
            ) from None

    def _on_data(self, ev: h2.events.DataReceived, events: list[Event]) -> None:
        sid = ev.stream_id
        data = ev.data
        fcl = ev.flow_controlled_length
        call = self._calls.get(sid)
        if call is None or call.state is CallState.CLOSED:
            if fcl:  # data for a call we ended: give the window back
                self._conn.acknowledge_received_data(fcl, sid)
            return
        try:
            self._step(call, CallInput.DATA)
            decoder = call.decoder
            before = decoder.buffered
            raw = decoder.receive_data(data)
            size = len(data)
            release = fcl - size  # padding
            if raw:
                tail = decoder.buffered  # bytes of this frame in the next, incomplete message
                # The first message is charged its earlier bytes that are still held, plus its part of
                # this frame; the others their whole wire size.
                share = call.partial_held - before
                call.held += call.partial_held + size - tail
                call.partial_held = 0
                max_size = decoder.max_message_size
                encoding = call.recv_encoding
                for msg in raw:
                    body = msg.data
                    share += PREFIX_SIZE + len(body)
                    if msg.compressed:
                        body = decompress(encoding, body, max_size)
                    events.append(
                        MessageReceived(
                            stream_id=sid, data=body, flow_controlled_length=share, compressed=msg.compressed
                        )
                    )
                    share = 0
            else:
                tail = size
            if tail:
                if call.held:
                    call.partial_held += tail  # the reader is behind: charge it
                else:
                    release += tail
            if release:
                self._conn.acknowledge_received_data(release, sid)
        except GrpcFramingError as exc:
            self._reject(call, events, exc.grpc_status, exc.detail)
        except _CallError as exc:
            self._reject(call, events, exc.status, exc.message, exc.http_status)

    def _on_stream_reset(self, ev: h2.events.StreamReset, events: list[Event]) -> None:
        call = self._forget(ev.stream_id)
        if call is None:
            return
        self._drop(call)
        events.append(
            StreamReset(stream_id=ev.stream_id, error_code=int(ev.error_code), remote=ev.remote_reset)
        )

    def _on_settings(self, ev: h2.events.RemoteSettingsChanged, events: list[Event]) -> None:
        changed = ev.changed_settings

        def value(code: SettingCodes) -> int | None:
            setting = changed.get(code)
            return None if setting is None else int(setting.new_value)

        events.append(
            SettingsChanged(
                max_concurrent_streams=value(SettingCodes.MAX_CONCURRENT_STREAMS),
                initial_window_size=value(SettingCodes.INITIAL_WINDOW_SIZE),
                max_frame_size=value(SettingCodes.MAX_FRAME_SIZE),
                max_header_list_size=value(SettingCodes.MAX_HEADER_LIST_SIZE),
            )
        )

    def _on_goaway(self, ev: h2.events.ConnectionTerminated, events: list[Event]) -> None:
        code = int(ev.error_code) if ev.error_code is not None else 0
        last = int(ev.last_stream_id) if ev.last_stream_id is not None else 0
        graceful = code == 0
        self._goaway_received = True
        self._last_stream_id = min(self._last_stream_id, last)
        if graceful:
            # Calls up to last_stream_id go on (see h2_patched). Calls the peer never processed
            # are gone; the shell may retry them elsewhere.
            for sid in [sid for sid in self._calls if sid > last and self._is_local_stream(sid)]:
                gone = self._forget(sid)
                if gone is not None:
                    self._drop(gone)
        else:
            for call in self._calls.values():
                self._drop(call)
            self._calls.clear()
            self._hand_back_deferred()
        events.append(
            ConnectionTerminated(
                error_code=code,
                last_stream_id=last,
                additional_data=ev.additional_data or b"",
                graceful=graceful,
            )
        )

    def _is_local_stream(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) == self._client_side

    def _on_stream_ended(self, stream_id: int, events: list[Event]) -> None:
        raise NotImplementedError  # pragma: no cover

    def _on_other(self, ev: h2.events.Event, events: list[Event]) -> None:
        raise NotImplementedError  # pragma: no cover

    def _reject(
        self, call: _Call, events: list[Event], status: StatusCode, message: str, http_status: int = 200
    ) -> None:
        raise NotImplementedError  # pragma: no cover


def _check_header_size(conn: h2.connection.H2Connection, headers: list[gh.Header]) -> None:
    """Refuse to send a header list over the peer's SETTINGS_MAX_HEADER_LIST_SIZE (as grpc-go does)."""
    peer_limit = conn.remote_settings.max_header_list_size
    if peer_limit is not None and gh.header_list_size(headers) > peer_limit:
        raise gh.GrpcHeaderError(f"header list size to send violates the peer's maximum ({peer_limit})")


_encoding_from = parse_encoding
_split_accept = parse_accept_encoding


class GrpcClientConnection(_GrpcConnection):
    """The client side of one HTTP/2 connection carrying gRPC calls.

    A call: ``start_call`` -> ``send_message``\\* (``end=True`` on the last, or ``end_stream``) ->
    events :class:`HeadersReceived`, :class:`MessageReceived`\\*, :class:`TrailersReceived`. It may
    also end with :class:`StreamReset`, :class:`CallRejected` or a :class:`ConnectionTerminated`.
    """

    _client_side = True
    _transitions = CLIENT_RECV_TRANSITIONS

    @property
    def available_streams(self) -> int:
        """How many more calls the peer's MAX_CONCURRENT_STREAMS allows now."""
        return self._conn.outbound_streams_available()

    def start_call(
        self,
        path: str,
        authority: str,
        *,
        metadata: gh.Metadata = (),
        timeout: float | None = None,
        content_subtype: str = "",
        encoding: str | None = None,
        accept_encoding: str | None = None,
    ) -> int:
        """Open a call: send the request headers and return the new stream id.

        ``timeout`` (seconds) becomes ``grpc-timeout``. ``encoding`` (``"gzip"``) is the compression
        of messages sent with ``compressed=True``. ``grpc-accept-encoding`` defaults to every
        encoding this core inflates, on every call (gRPC compression.md), so that a server may
        compress its replies whether or not the request is compressed. Raises
        :class:`TooManyStreamsError` when the peer's stream limit is reached and
        :class:`ConnectionClosedError` after GOAWAY.
        """
        if self.closing:
            raise ConnectionClosedError("GOAWAY sent or received; start the call on another connection")
        if encoding is not None and encoding not in SUPPORTED_ENCODINGS:
            raise ValueError(f"unsupported encoding {encoding!r}")
        if accept_encoding is None:
            accept_encoding = ACCEPT_ENCODING
        headers = gh.build_request_headers(
            path,
            authority,
            scheme=self.config.scheme,
            content_subtype=content_subtype,
            user_agent=self.config.user_agent,
            timeout=timeout,
            encoding=encoding,
            accept_encoding=accept_encoding,
            metadata=metadata,
        )
        conn = self._conn
        if metadata:  # without user metadata a request is a few hundred bytes: skip the sum
            _check_header_size(conn, headers)
        stream_id = int(conn.get_next_available_stream_id())
        try:
            conn.send_headers(stream_id, headers)
        except h2.exceptions.TooManyStreamsError as exc:
            raise TooManyStreamsError(str(exc)) from exc
        call = _Call(stream_id, CallState.AWAIT_HEADERS, self.config.max_message_size)
        call.send_encoding = encoding if encoding != "identity" else None
        call.content_subtype = content_subtype
        self._calls[stream_id] = call
        return stream_id

    def send_message(
        self, stream_id: int, body: bytes, *, compressed: bool = False, end: bool = False
    ) -> None:
        """Send one request message; ``end=True`` half-closes the call after it (one frame for unary)."""
        call = self._writable(stream_id)
        if compressed:
            if call.send_encoding is None:
                raise ValueError("compressed=True needs an encoding on this call")
            body = compress(call.send_encoding, body)
        call.local_done = end
        self._queue_data(call, encode_message(body, compressed), end=end)

    def end_stream(self, stream_id: int) -> None:
        """Half-close the call (no more request messages), after any pending data."""
        call = self._writable(stream_id)
        call.local_done = True
        self._queue_data(call, b"", end=True)

    # -- receiving ---------------------------------------------------------------------------------

    def _on_other(self, ev: h2.events.Event, events: list[Event]) -> None:
        oversized = self._conn.oversized_streams
        if (
            oversized
            and isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived)
            and ev.stream_id in oversized
        ):
            oversized.discard(ev.stream_id)
            call = self._calls.get(ev.stream_id)
            if call is not None:  # grpc-go's client: INTERNAL, and RST_STREAM FRAME_SIZE_ERROR
                self._reject(
                    call, events, StatusCode.INTERNAL, _OVERSIZED_HEADERS, reset=ErrorCodes.FRAME_SIZE_ERROR
                )
            return
        if isinstance(ev, h2.events.ResponseReceived):
            call = self._calls.get(ev.stream_id)
            if call is None:
                return
            try:
                if ev.stream_ended is not None:
                    self._on_trailers(call, ev.headers, events, trailers_only=True)
                else:
                    self._on_response_headers(call, ev.headers, events)
            except _CallError as exc:
                self._reject(call, events, exc.status, exc.message, exc.http_status)
        elif isinstance(ev, h2.events.TrailersReceived):
            call = self._calls.get(ev.stream_id)
            if call is None:
                return
            try:
                self._on_trailers(call, ev.headers, events, trailers_only=False)
            except _CallError as exc:
                self._reject(call, events, exc.status, exc.message, exc.http_status)
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            oversized.discard(ev.stream_id)  # otherwise ignored, as SettingsAcknowledged, PriorityUpdated
        # and unknown frames are

    def _on_response_headers(self, call: _Call, headers: Iterable[gh.Header], events: list[Event]) -> None:
        http_status = b""
        content_type: bytes | None = None
        encoding: bytes | None = None
        for name, value in headers:
            if name == b":status":
                http_status = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-encoding":
                encoding = value
        _check_response_start(http_status, content_type)
        self._step(call, CallInput.HEADERS)
        call.recv_encoding = _encoding_from(encoding)
        if call.recv_encoding is not None and call.recv_encoding not in SUPPORTED_ENCODINGS:
            raise _CallError(
                StatusCode.INTERNAL, f"unsupported grpc-encoding {call.recv_encoding!r} in response"
            )
        events.append(
            HeadersReceived(
                stream_id=call.stream_id,
                metadata=gh.decode_metadata(headers),
                encoding=call.recv_encoding,
                content_type=(content_type or b"").decode("ascii", "replace"),
            )
        )

    def _on_trailers(
        self, call: _Call, headers: Iterable[gh.Header], events: list[Event], *, trailers_only: bool
    ) -> None:
        http_status = b"200"
        content_type: bytes | None = b"application/grpc"
        raw_status: bytes | None = None
        message = b""
        details: bytes | None = None
        for name, value in headers:
            if name == b"grpc-status":
                raw_status = value
            elif name == b"grpc-message":
                message = value
            elif name == b"grpc-status-details-bin":
                details = value
            elif name == b":status":
                http_status = value
            elif name == b"content-type":
                content_type = value
        if raw_status is None:
            if trailers_only:
                # Not a gRPC answer (a proxy's error page, say): derive the status from HTTP.
                _check_response_start(http_status, content_type)
            raise _CallError(StatusCode.INTERNAL, "server closed the stream without sending trailers")
        self._step(call, CallInput.TRAILERS)
        try:
            code = gh.parse_grpc_status(raw_status)
            detail_bytes = None if details is None else gh.decode_binary_value(details)
            metadata = gh.decode_metadata(headers)
        except gh.GrpcHeaderError as exc:
            raise _CallError(StatusCode.INTERNAL, exc.detail) from exc
        self._finish(call)
        events.append(
            TrailersReceived(
                stream_id=call.stream_id,
                status=StatusCode.from_wire(code),
                raw_status=code,
                message=gh.decode_grpc_message(message),
                metadata=metadata,
                details=detail_bytes,
                trailers_only=trailers_only,
            )
        )

    def _finish(self, call: _Call) -> None:
        """The server ended the call; stop sending if we had not (grpc-go resets with NO_ERROR)."""
        self._forget(call.stream_id)
        # Messages already delivered stay the shell's to acknowledge (acknowledge_received works on
        # closed streams too); a partial message will never complete.
        if call.partial_held:
            self._conn.acknowledge_received_data(call.partial_held, call.stream_id)
            call.partial_held = 0
        if not call.local_done or call.pending_size:
            self._blocked.pop(call.stream_id, None)
            call.pending.clear()
            call.pending_size = 0
            call.local_done = True
            self._safe_reset(call.stream_id, ErrorCodes.NO_ERROR)

    def _on_stream_ended(self, stream_id: int, events: list[Event]) -> None:
        call = self._calls.get(stream_id)
        if call is None:
            return
        try:
            self._step(call, CallInput.END)
        except _CallError:
            message = "server closed the stream without sending trailers"
            self._reject(call, events, StatusCode.INTERNAL, message)

    def _reject(
        self,
        call: _Call,
        events: list[Event],
        status: StatusCode,
        message: str,
        http_status: int = 200,
        *,
        reset: ErrorCodes = ErrorCodes.CANCEL,
    ) -> None:
        self._forget(call.stream_id)
        self._drop(call)
        self._safe_reset(call.stream_id, reset)
        events.append(
            CallRejected(stream_id=call.stream_id, status=status, message=message, http_status=http_status)
        )


def _check_response_start(http_status: bytes, content_type: bytes | None) -> None:
    """A response must be HTTP 200 with a gRPC content-type (grpc-go's client checks, in this order)."""
    if http_status != b"200":
        try:
            code = int(http_status)
        except ValueError:
            raise _CallError(StatusCode.INTERNAL, f"malformed http status {http_status!r}") from None
        status = gh.HTTP_TO_GRPC_STATUS.get(code, StatusCode.UNKNOWN)
        raise _CallError(status, f"unexpected HTTP status code received from server: {code}", code)
    if gh.parse_content_type(content_type) is None:
        raise _CallError(StatusCode.UNKNOWN, f"unexpected content-type {content_type!r} in response")


class GrpcServerConnection(_GrpcConnection):
    """The server side of one HTTP/2 connection carrying gRPC calls.

    A call: event :class:`CallStarted` -> :class:`MessageReceived`\\* -> :class:`StreamEnded`; the
    shell answers with ``send_headers`` (optional: the first ``send_message`` sends them),
    ``send_message``\\* and ``send_trailers``. A call that fails before any response header becomes a
    trailers-only response.
    """

    _client_side = False
    _transitions = SERVER_RECV_TRANSITIONS

    def set_flood_guard(self, guard: FloodGuard) -> None:
        """Check the client's PING, SETTINGS and RST_STREAM frames with ``guard`` as they arrive; when
        it trips, ``receive_data`` queues GOAWAY ENHANCE_YOUR_CALM with its debug data and raises
        :class:`H2ConnectionError`."""
        self._conn.guard = guard

    def send_headers(
        self, stream_id: int, *, metadata: gh.Metadata = (), encoding: str | None = None
    ) -> None:
        """Send the response headers; ``encoding`` (from the client's ``accept_encoding``) compresses
        messages sent with ``compressed=True``."""
        call = self._writable(stream_id)
        if call.headers_sent:
            raise StreamClosedError(f"response headers already sent on stream {stream_id}")
        if encoding is not None and encoding not in SUPPORTED_ENCODINGS:
            raise ValueError(f"unsupported encoding {encoding!r}")
        call.send_encoding = None if encoding == "identity" else encoding
        headers = gh.build_response_headers(
            content_subtype=call.content_subtype, encoding=call.send_encoding, metadata=metadata
        )
        if metadata:
            _check_header_size(self._conn, headers)
        call.headers_sent = True
        self._conn.writes += 1
        self._conn.send_headers(stream_id, headers)

    def send_trailers(
        self,
        stream_id: int,
        status: StatusCode | int,
        message: str = "",
        *,
        metadata: gh.Metadata = (),
        details: bytes | None = None,
    ) -> None:
        """End the call with a status; sent after any pending messages (trailers-only if no header
        went out yet). If the client is still sending, RST_STREAM(NO_ERROR) follows, as grpc-go does."""
        call = self._writable(stream_id)
        trailers = gh.build_trailers(
            status,
            message,
            metadata=metadata,
            details=details,
            trailers_only=not call.headers_sent,
            content_subtype=call.content_subtype,
        )
        if metadata or details is not None or len(message) > 1024:
            _check_header_size(self._conn, trailers)
        call.headers_sent = True
        call.local_done = True
        if call.pending_size:
            call.trailers_after_flush = trailers
        else:
            self._send_trailer_headers(call, trailers)

    def _before_message(self, call: _Call) -> None:
        if not call.headers_sent:
            call.headers_sent = True
            self._conn.send_headers(
                call.stream_id, gh.build_response_headers(content_subtype=call.content_subtype)
            )

    def _send_trailer_headers(self, call: _Call, trailers: list[gh.Header]) -> None:
        sid = call.stream_id
        self._conn.writes += 1
        self._conn.send_headers(sid, trailers, end_stream=True)
        # The call is over for us. If the client is still sending, tell it to stop (as grpc-go does).
        if call.state is CallState.OPEN:
            self._safe_reset(sid, ErrorCodes.NO_ERROR)
        self._forget(sid)
        self._blocked.pop(sid, None)
        call.state = CallState.CLOSED

    # -- receiving ---------------------------------------------------------------------------------

    def _on_other(self, ev: h2.events.Event, events: list[Event]) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            self._on_request(ev.stream_id, ev.headers, events)
        elif isinstance(ev, h2.events.TrailersReceived):
            # gRPC requests carry no trailers.
            self._conn.oversized_streams.discard(ev.stream_id)
            call = self._calls.get(ev.stream_id)
            if call is not None:
                self._reject(call, events, StatusCode.INTERNAL, "unexpected trailers in request")

    def _on_request(self, stream_id: int, headers: Iterable[gh.Header], events: list[Event]) -> None:
        if stream_id in self._conn.oversized_streams:
            # grpc-go: "peer header list size exceeded limit", the stream reset with FRAME_SIZE_ERROR.
            self._conn.oversized_streams.discard(stream_id)
            self._safe_reset(stream_id, ErrorCodes.FRAME_SIZE_ERROR)
            events.append(
                CallRejected(stream_id=stream_id, status=StatusCode.INTERNAL, message=_OVERSIZED_HEADERS)
            )
            return
        call = _Call(stream_id, CallState.OPEN, self.config.max_message_size)
        self._calls[stream_id] = call
        if self._goaway_sent and stream_id > self._local_last_stream_id:
            self._calls.pop(stream_id)
            self._safe_reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        method = path = authority = content_type = timeout = encoding = accept = user_agent = None
        for name, value in headers:
            if name[:1] == b":":
                if name == b":path":
                    path = value
                elif name == b":method":
                    method = value
                elif name == b":authority":
                    authority = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                timeout = value
            elif name == b"grpc-encoding":
                encoding = value
            elif name == b"grpc-accept-encoding":
                accept = value
            elif name == b"user-agent":
                user_agent = value
            elif name == b"host" and authority is None:
                authority = value
        subtype = gh.parse_content_type(content_type)
        try:
            if subtype is None:
                raise _CallError(
                    StatusCode.INVALID_ARGUMENT, f"invalid gRPC request content-type {content_type!r}", 415
                )
            call.content_subtype = subtype
            if method != b"POST":
                raise _CallError(StatusCode.INTERNAL, f"invalid gRPC request method {method!r}", 405)
            if not path:
                raise _CallError(StatusCode.UNIMPLEMENTED, "malformed method name: missing :path", 404)
            seconds = None
            if timeout is not None:
                try:
                    seconds = gh.decode_timeout(timeout)
                except gh.GrpcHeaderError as exc:
                    raise _CallError(StatusCode.INTERNAL, exc.detail, 400) from exc
            call.recv_encoding = _encoding_from(encoding)
            if call.recv_encoding is not None and call.recv_encoding not in SUPPORTED_ENCODINGS:
                # gRPC compression.md: UNIMPLEMENTED, and grpc-accept-encoding lists what we inflate.
                self._reject(
                    call,
                    events,
                    StatusCode.UNIMPLEMENTED,
                    f"grpc: decompressor is not installed for grpc-encoding {call.recv_encoding!r}",
                    extra=[(b"grpc-accept-encoding", ACCEPT_ENCODING.encode("ascii"))],
                )
                return
            try:
                metadata = gh.decode_metadata(headers)
            except gh.GrpcHeaderError as exc:
                raise _CallError(StatusCode.INTERNAL, exc.detail, 400) from exc
        except _CallError as exc:
            self._reject(call, events, exc.status, exc.message, exc.http_status)
            return
        events.append(
            CallStarted(
                stream_id=stream_id,
                path=path.decode("utf-8", "replace"),
                authority=(authority or b"").decode("utf-8", "replace"),
                metadata=metadata,
                timeout=seconds,
                content_type=(content_type or b"").decode("ascii", "replace"),
                content_subtype=subtype,
                encoding=call.recv_encoding,
                accept_encoding=_split_accept(accept),
                user_agent=None if user_agent is None else user_agent.decode("utf-8", "replace"),
            )
        )

    def _on_stream_ended(self, stream_id: int, events: list[Event]) -> None:
        call = self._calls.get(stream_id)
        if call is None:
            return
        try:
            self._step(call, CallInput.END)
            if call.decoder.in_message:
                raise _CallError(StatusCode.INTERNAL, "client half-closed in the middle of a message")
        except _CallError as exc:
            self._reject(call, events, exc.status, exc.message)
            return
        events.append(StreamEnded(stream_id=stream_id))

    def _reject(
        self,
        call: _Call,
        events: list[Event],
        status: StatusCode,
        message: str,
        http_status: int = 200,
        *,
        extra: list[gh.Header] | None = None,
    ) -> None:
        sid = call.stream_id
        recv_open = call.state is CallState.OPEN
        self._forget(sid)
        self._drop(call)
        if call.headers_sent and http_status != 200:
            http_status = 200
        trailers = gh.build_trailers(
            status,
            message,
            trailers_only=not call.headers_sent,
            content_subtype=call.content_subtype,
            http_status=http_status,
        )
        if extra:
            trailers += extra
        try:
            self._conn.send_headers(sid, trailers, end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        else:
            if recv_open:
                self._safe_reset(sid, ErrorCodes.NO_ERROR)
        events.append(CallRejected(stream_id=sid, status=status, message=message, http_status=http_status))
