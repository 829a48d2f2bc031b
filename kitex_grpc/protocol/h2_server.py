"""The server role of sans-IO gRPC over HTTP/2: :class:`GrpcServerConnection`.

It validates request headers into :class:`~kitex_grpc.protocol.h2_events.CallStarted` (or rejects the
call with a trailers-only answer), sends response headers, messages and trailers, and checks the
client's control frames with the flood guard; the shared machinery (bytes in and out, flow control,
PING, GOAWAY) is :class:`~kitex_grpc.protocol.h2_core.GrpcConnectionCore`'s.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterable

import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from kitex_grpc.protocol import grpc_headers as gh
from kitex_grpc.protocol.grpc_compression import parse_accept_encoding, parse_encoding
from kitex_grpc.protocol.grpc_framing import (
    ACCEPT_ENCODING,
    SUPPORTED_ENCODINGS,
)
from kitex_grpc.protocol.h2_call_state import (
    OVERSIZED_HEADERS,
    SERVER_RECV_TRANSITIONS,
    CallError,
    CallInput,
    CallState,
    GrpcConnectionConfig,
    StreamCall,
    StreamClosedError,
    check_header_size,
)
from kitex_grpc.protocol.h2_core import GrpcConnectionCore
from kitex_grpc.protocol.h2_events import (
    CallRejected,
    CallStarted,
    Event,
    StreamEnded,
)
from kitex_grpc.protocol.h2_limits import FloodGuard
from kitex_grpc.status import StatusCode

__all__ = ["GrpcServerConnection"]


class GrpcServerConnection(GrpcConnectionCore):
    """The server side of one HTTP/2 connection carrying gRPC calls.

    A call: event :class:`CallStarted` -> :class:`MessageReceived`\\* -> :class:`StreamEnded`; the
    shell answers with ``send_headers`` (optional: the first ``send_message`` sends them),
    ``send_message``\\* and ``send_trailers``. A call that fails before any response header becomes a
    trailers-only response.
    """

    _client_side = False
    _transitions = SERVER_RECV_TRANSITIONS

    def __init__(self, config: GrpcConnectionConfig | None = None) -> None:
        super().__init__(config)
        # Requests refused at their HEADERS while the client may still send DATA: the refusal went out
        # at once, the RST_STREAM(NO_ERROR) that tells the client to stop waits for its first DATA, so
        # that h2 checks that DATA against the request's content-length first (RFC 9113 §8.1.1: a
        # mismatch is malformed, PROTOCOL_ERROR) whichever read brings it. h2 counts these streams as
        # open (half-closed local), so MAX_CONCURRENT_STREAMS bounds the set.
        self._refused_at_headers: set[int] = set()

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
            check_header_size(self._conn, headers)
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
            check_header_size(self._conn, trailers)
        call.headers_sent = True
        call.local_done = True
        if call.pending_size:
            call.trailers_after_flush = trailers
        else:
            self._send_trailer_headers(call, trailers)

    def _before_message(self, call: StreamCall) -> None:
        if not call.headers_sent:
            call.headers_sent = True
            self._conn.send_headers(
                call.stream_id, gh.build_response_headers(content_subtype=call.content_subtype)
            )

    def _send_trailer_headers(self, call: StreamCall, trailers: list[gh.Header]) -> None:
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
                CallRejected(stream_id=stream_id, status=StatusCode.INTERNAL, message=OVERSIZED_HEADERS)
            )
            return
        call = StreamCall(stream_id, CallState.OPEN, self.config.max_message_size)
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
                raise CallError(
                    StatusCode.INVALID_ARGUMENT, f"invalid gRPC request content-type {content_type!r}", 415
                )
            call.content_subtype = subtype
            if method != b"POST":
                raise CallError(StatusCode.INTERNAL, f"invalid gRPC request method {method!r}", 405)
            if not path:
                raise CallError(StatusCode.UNIMPLEMENTED, "malformed method name: missing :path", 404)
            seconds = None
            if timeout is not None:
                try:
                    seconds = gh.decode_timeout(timeout)
                except gh.GrpcHeaderError as exc:
                    raise CallError(StatusCode.INTERNAL, exc.detail, 400) from exc
            call.recv_encoding = parse_encoding(encoding)
            if call.recv_encoding is not None and call.recv_encoding not in SUPPORTED_ENCODINGS:
                # gRPC compression.md: UNIMPLEMENTED, and grpc-accept-encoding lists what we inflate.
                self._reject(
                    call,
                    events,
                    StatusCode.UNIMPLEMENTED,
                    f"grpc: decompressor is not installed for grpc-encoding {call.recv_encoding!r}",
                    extra=[(b"grpc-accept-encoding", ACCEPT_ENCODING.encode("ascii"))],
                    at_headers=True,
                )
                return
            try:
                metadata = gh.decode_metadata(headers)
            except gh.GrpcHeaderError as exc:
                raise CallError(StatusCode.INTERNAL, exc.detail, 400) from exc
        except CallError as exc:
            self._reject(call, events, exc.status, exc.message, exc.http_status, at_headers=True)
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
                accept_encoding=parse_accept_encoding(accept),
                user_agent=None if user_agent is None else user_agent.decode("utf-8", "replace"),
            )
        )

    def _on_stream_ended(self, stream_id: int, events: list[Event]) -> None:
        call = self._calls.get(stream_id)
        if call is None:
            self._refused_at_headers.discard(stream_id)
            return
        try:
            self._step(call, CallInput.END)
            if call.decoder.in_message:
                raise CallError(StatusCode.INTERNAL, "client half-closed in the middle of a message")
        except CallError as exc:
            self._reject(call, events, exc.status, exc.message)
            return
        events.append(StreamEnded(stream_id=stream_id))

    def _on_data_after_end(self, stream_id: int) -> None:
        if stream_id in self._refused_at_headers:
            self._refused_at_headers.discard(stream_id)
            self._safe_reset(stream_id, ErrorCodes.NO_ERROR)

    def _on_stream_reset(self, ev: h2.events.StreamReset, events: list[Event]) -> None:
        self._refused_at_headers.discard(ev.stream_id)
        super()._on_stream_reset(ev, events)

    def _reject(
        self,
        call: StreamCall,
        events: list[Event],
        status: StatusCode,
        message: str,
        http_status: int = 200,
        *,
        extra: list[gh.Header] | None = None,
        at_headers: bool = False,
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
            if recv_open and at_headers:
                self._refused_at_headers.add(sid)  # reset at its first DATA: see __init__
            elif recv_open:
                self._safe_reset(sid, ErrorCodes.NO_ERROR)
        events.append(CallRejected(stream_id=sid, status=status, message=message, http_status=http_status))
