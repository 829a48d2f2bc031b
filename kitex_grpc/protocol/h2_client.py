"""The client role of sans-IO gRPC over HTTP/2: :class:`GrpcClientConnection`.

It starts calls (request headers), sends request messages and half-closes, and turns the server's
response headers, messages and trailers into events; the shared machinery (bytes in and out, flow
control, PING, GOAWAY) is :class:`~kitex_grpc.protocol.h2_core.GrpcConnectionCore`'s.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterable

import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from kitex_grpc.protocol import grpc_headers as gh
from kitex_grpc.protocol.grpc_compression import parse_encoding
from kitex_grpc.protocol.grpc_framing import (
    ACCEPT_ENCODING,
    SUPPORTED_ENCODINGS,
    compress,
)
from kitex_grpc.protocol.h2_call_state import (
    CLIENT_RECV_TRANSITIONS,
    OVERSIZED_HEADERS,
    CallError,
    CallInput,
    CallState,
    ConnectionClosedError,
    StreamCall,
    TooManyStreamsError,
    check_header_size,
)
from kitex_grpc.protocol.h2_core import GrpcConnectionCore
from kitex_grpc.protocol.h2_events import (
    CallRejected,
    Event,
    HeadersReceived,
    TrailersReceived,
)
from kitex_grpc.status import StatusCode

__all__ = ["GrpcClientConnection"]


class GrpcClientConnection(GrpcConnectionCore):
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
            check_header_size(conn, headers)
        stream_id = int(conn.get_next_available_stream_id())
        try:
            conn.send_headers(stream_id, headers)
        except h2.exceptions.TooManyStreamsError as exc:
            raise TooManyStreamsError(str(exc)) from exc
        call = StreamCall(stream_id, CallState.AWAIT_HEADERS, self.config.max_message_size)
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
        self._queue_message(call, body, compressed, end=end)

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
                    call, events, StatusCode.INTERNAL, OVERSIZED_HEADERS, reset=ErrorCodes.FRAME_SIZE_ERROR
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
            except CallError as exc:
                self._reject(call, events, exc.status, exc.message, exc.http_status)
        elif isinstance(ev, h2.events.TrailersReceived):
            call = self._calls.get(ev.stream_id)
            if call is None:
                return
            try:
                self._on_trailers(call, ev.headers, events, trailers_only=False)
            except CallError as exc:
                self._reject(call, events, exc.status, exc.message, exc.http_status)
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            oversized.discard(ev.stream_id)  # otherwise ignored, as SettingsAcknowledged, PriorityUpdated
        # and unknown frames are

    def _on_response_headers(
        self, call: StreamCall, headers: Iterable[gh.Header], events: list[Event]
    ) -> None:
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
        call.recv_encoding = parse_encoding(encoding)
        if call.recv_encoding is not None and call.recv_encoding not in SUPPORTED_ENCODINGS:
            raise CallError(
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
        self, call: StreamCall, headers: Iterable[gh.Header], events: list[Event], *, trailers_only: bool
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
            raise CallError(StatusCode.INTERNAL, "server closed the stream without sending trailers")
        self._step(call, CallInput.TRAILERS)
        try:
            code = gh.parse_grpc_status(raw_status)
            detail_bytes = None if details is None else gh.decode_binary_value(details)
            metadata = gh.decode_metadata(headers)
        except gh.GrpcHeaderError as exc:
            raise CallError(StatusCode.INTERNAL, exc.detail) from exc
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

    def _finish(self, call: StreamCall) -> None:
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
        except CallError:
            message = "server closed the stream without sending trailers"
            self._reject(call, events, StatusCode.INTERNAL, message)

    def _reject(
        self,
        call: StreamCall,
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
            raise CallError(StatusCode.INTERNAL, f"malformed http status {http_status!r}") from None
        status = gh.HTTP_TO_GRPC_STATUS.get(code, StatusCode.UNKNOWN)
        raise CallError(status, f"unexpected HTTP status code received from server: {code}", code)
    if gh.parse_content_type(content_type) is None:
        raise CallError(StatusCode.UNKNOWN, f"unexpected content-type {content_type!r} in response")
