"""The call core of sans-IO gRPC over HTTP/2: what the client and the server role share.

:class:`GrpcConnectionCore` is the base of :class:`~kitex_grpc.protocol.h2_client.GrpcClientConnection`
and :class:`~kitex_grpc.protocol.h2_server.GrpcServerConnection`. Each wraps one h2 connection, made
by :mod:`~kitex_grpc.protocol.h2_patched` (the one package that touches h2's internals; the cores use
h2's public API only). Bytes from the socket go to ``receive_data`` and come back as
:mod:`~kitex_grpc.protocol.h2_events`; commands (``start_call``, ``send_message``, ``send_trailers``,
``reset``, ``ping``, ``close`` ...) queue frames that ``data_to_send`` hands out. Nothing here does
I/O, sleeps or keeps time.

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
calls release what they held. Every acknowledgement goes to h2 at once: h2 batches the
WINDOW_UPDATEs itself (one once half a window was consumed). The whole path, DATA received to window
handed back, is the section "inbound flow control" of :class:`GrpcConnectionCore`
(``_on_data`` and ``acknowledge_received``).

The receive side of each call follows a transition table (``CLIENT_RECV_TRANSITIONS``,
``SERVER_RECV_TRANSITIONS`` in :mod:`~kitex_grpc.protocol.h2_call_state`); a pair not in the table is a
gRPC violation by the peer, which ends that call with :class:`CallRejected` and keeps the connection.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib

import h2.config
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from kitex_grpc.protocol import grpc_headers as gh
from kitex_grpc.protocol import h2_patched
from kitex_grpc.protocol.grpc_framing import (
    PREFIX_SIZE,
    GrpcFramingError,
    compress,
    decompress,
    encode_message,
    message_prefix,
)
from kitex_grpc.protocol.h2_bdp import BdpFlowControl
from kitex_grpc.protocol.h2_call_state import (
    CLIENT_RECV_TRANSITIONS,
    MAX_STREAM_ID,
    CallError,
    CallInput,
    CallState,
    GrpcConnectionConfig,
    H2ConnectionError,
    StreamCall,
    StreamClosedError,
)
from kitex_grpc.protocol.h2_events import (
    ConnectionTerminated,
    Event,
    MessageReceived,
    PingAcked,
    PingReceived,
    SettingsChanged,
    StreamRefused,
    StreamReset,
    WindowUpdated,
)
from kitex_grpc.status import StatusCode

__all__ = ["GrpcConnectionCore"]


# Up to one default-sized frame (16 KiB), a message is joined to its prefix and sent as one piece: one
# small copy. Larger bodies go out as parts of their frames (_queue_message).
_JOIN_MAX = 16_384


class GrpcConnectionCore:
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
                MAX_STREAM_ID if config.max_concurrent_streams is None else config.max_concurrent_streams
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
        self._calls: dict[int, StreamCall] = {}
        self._blocked: dict[int, StreamCall] = {}  # calls with pending outbound data, in arrival order
        self._out = bytearray()  # frames written around h2 (graceful GOAWAY), ahead of h2's buffer
        self._goaway_sent = False
        self._goaway_received = False
        self._last_stream_id = MAX_STREAM_ID  # highest stream the peer will still process
        self._local_last_stream_id = MAX_STREAM_ID  # highest stream we said (GOAWAY) we would process
        # BDP hook (h2_bdp): grows the receive windows; None: static windows.
        self._bdp = BdpFlowControl.create(
            config.bdp, config.initial_window_size, config.initial_connection_window_size
        )

    # -- bytes in / bytes out ------------------------------------------------------------------

    def data_to_send(self) -> bytes | bytearray:
        """Everything queued for the socket, in order; empty when there is nothing. The caller owns
        what it gets (a buffer nothing else refers to)."""
        data = self._conn.take_output()
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
                if self._bdp is not None:  # BDP hook: count the bytes, maybe start a sample
                    self._bdp.data_received(self._conn, ev.flow_controlled_length)
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
                # BDP hook: the BDP PING's ACK may grow the windows; it is not reported.
                if self._bdp is None or not self._bdp.ping_acked(self._conn, ev.ping_data):
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

    # -- inbound flow control: DATA received -> message events -> acknowledgement -> WINDOW_UPDATE --

    def _on_data(self, ev: h2.events.DataReceived, events: list[Event]) -> None:
        sid = ev.stream_id
        data = ev.data
        fcl = ev.flow_controlled_length
        call = self._calls.get(sid)
        if call is None or call.state is CallState.CLOSED:
            if fcl:  # data for a call we ended: give the window back
                self._conn.acknowledge_received_data(fcl, sid)
            self._on_data_after_end(sid)
            return
        try:
            self._step(call, CallInput.DATA)
            decoder = call.decoder
            before = decoder.buffered
            raw = decoder.receive_data(data, owned=True)  # h2 hands out bytes nothing changes
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
        except CallError as exc:
            self._reject(call, events, exc.status, exc.message, exc.http_status)

    def acknowledge_received(self, stream_id: int, n: int) -> bool:
        """The shell consumed ``n`` flow-controlled bytes (``MessageReceived.flow_controlled_length``).

        Returns whether a WINDOW_UPDATE may be waiting in ``data_to_send`` (h2 sends one only once
        half a window was consumed, RFC 9113 §6.9 leaves the timing to the receiver).
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
        # h2 credits the connection window even for a closed stream, and caps both at their maximum.
        try:
            return self._conn.acknowledge(n, stream_id)
        except h2.exceptions.NoSuchStreamError:
            return False

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
        self._queue_message(call, body, compressed, end=False)

    def reset(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        """Send RST_STREAM and forget the call; a no-op for a call that is already over."""
        call = self._forget(stream_id)
        if call is None:
            return
        self._drop(call)
        self._safe_reset(stream_id, error_code)

    def _forget(self, stream_id: int) -> StreamCall | None:
        """Remove a call from the table."""
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
            last = MAX_STREAM_ID if last_stream_id is None else last_stream_id
            # h2 would refuse every frame after its own GOAWAY, so this one is written around it, after
            # whatever h2 has already queued.
            frame = GoAwayFrame(
                stream_id=0, last_stream_id=last, error_code=int(error_code), additional_data=additional_data
            )
            self._out += self._conn.take_output()
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

    def _writable(self, stream_id: int) -> StreamCall:
        call = self._calls.get(stream_id)
        if call is None or call.local_done:
            raise StreamClosedError(f"stream {stream_id} cannot send")
        return call

    def _before_message(self, call: StreamCall) -> None:
        """Role hook before a message is queued (a server sends its headers first)."""

    def _queue_message(self, call: StreamCall, body: bytes, compressed: bool, *, end: bool) -> None:
        """Frame one message and send it, or keep what the windows do not allow yet."""
        if len(body) <= _JOIN_MAX:
            self._queue_data(call, encode_message(body, compressed), end=end)
            return
        # A large body is not joined to its prefix: both go into the same DATA frames as parts, so
        # the body is copied once, into h2's output buffer (bench/copies.py counts the copies).
        call.pending.append(memoryview(message_prefix(len(body), compressed)))
        call.pending.append(memoryview(body))
        call.pending_size += PREFIX_SIZE + len(body)
        self._queue_data(call, b"", end=end)

    def _queue_data(self, call: StreamCall, data: bytes, *, end: bool) -> None:
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

    def _flush(self, call: StreamCall) -> None:
        """Send as much of ``call.pending`` as the windows allow, then what waits behind it."""
        conn = self._conn
        sid = call.stream_id
        pending = call.pending
        while pending:
            window = conn.local_flow_control_window(sid)
            if window <= 0:
                return
            n = min(call.pending_size, window, conn.max_outbound_frame_size)
            chunk = pending[0]
            call.pending_size -= n
            if n <= len(chunk):  # one chunk fills the frame
                if n == len(chunk):
                    pending.popleft()
                else:
                    pending[0] = chunk[n:]
                    chunk = chunk[:n]
                last = not pending
                conn.send_data(sid, chunk, end_stream=last and call.end_after_flush)
            else:  # the frame takes whole chunks (a message's prefix and body) and maybe part of one more
                parts = []
                need = n
                while need:
                    chunk = pending[0]
                    if len(chunk) <= need:
                        parts.append(pending.popleft())
                        need -= len(chunk)
                    else:
                        parts.append(chunk[:need])
                        pending[0] = chunk[need:]
                        need = 0
                last = not pending
                conn.send_data_parts(sid, parts, n, end_stream=last and call.end_after_flush)
            if last and call.end_after_flush:
                call.end_after_flush = False
                return
        if call.end_after_flush:  # an END_STREAM queued with no data behind it
            call.end_after_flush = False
            conn.end_stream(sid)
        if call.trailers_after_flush is not None:
            trailers, call.trailers_after_flush = call.trailers_after_flush, None
            self._send_trailer_headers(call, trailers)

    def _send_trailer_headers(self, call: StreamCall, trailers: list[gh.Header]) -> None:
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

    def _after_flushed(self, call: StreamCall) -> None:
        """Role hook: ``call``'s last pending bytes (and whatever waited behind them) went out."""

    def _drop(self, call: StreamCall) -> None:
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

    def _on_data_after_end(self, stream_id: int) -> None:
        """DATA (already checked by h2) arrived on a stream whose call we ended; the server resets it."""

    def _safe_reset(self, stream_id: int, error_code: int) -> None:
        # A stream (or connection) that is already closed needs no reset.
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._conn.reset_stream(stream_id, error_code)

    # -- internals: receiving ----------------------------------------------------------------------

    def _step(self, call: StreamCall, event: CallInput) -> None:
        try:
            call.state = self._transitions[(call.state, event)]
        except KeyError:
            raise CallError(
                StatusCode.INTERNAL, f"unexpected {event.value} in call state {call.state.value}"
            ) from None

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
        # A drain (NO_ERROR) keeps the calls below last_stream_id, where the h2 connection survives it.
        graceful = code == 0 and self._conn.drains_on_goaway
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
        self, call: StreamCall, events: list[Event], status: StatusCode, message: str, http_status: int = 200
    ) -> None:
        raise NotImplementedError  # pragma: no cover
