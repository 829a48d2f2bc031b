"""Configuration, errors and per-call state of the sans-IO gRPC-over-HTTP/2 cores.

What :mod:`~kitex_grpc.protocol.h2_core` and its two roles (:mod:`~kitex_grpc.protocol.h2_client`,
:mod:`~kitex_grpc.protocol.h2_server`) share besides the core itself: the connection's tuning, the
errors its commands raise, the receive-side state machine of a call (:data:`CLIENT_RECV_TRANSITIONS`,
:data:`SERVER_RECV_TRANSITIONS`) and the record a core keeps per call (:class:`StreamCall`).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

import h2.connection

from kitex_grpc.errors import KitexError, ProtocolError
from kitex_grpc.protocol import grpc_headers as gh
from kitex_grpc.protocol.grpc_framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MessageDecoder,
)
from kitex_grpc.protocol.h2_bdp import BdpConfig
from kitex_grpc.status import StatusCode

__all__ = [
    "CLIENT_RECV_TRANSITIONS",
    "MAX_STREAM_ID",
    "MAX_WINDOW",
    "OVERSIZED_HEADERS",
    "SERVER_RECV_TRANSITIONS",
    "CallError",
    "CallInput",
    "CallState",
    "ConnectionClosedError",
    "GrpcConnectionConfig",
    "H2ConnectionError",
    "StreamCall",
    "StreamClosedError",
    "TooManyStreamsError",
    "check_header_size",
]

MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1


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
    # Adaptive receive windows (h2_bdp); None keeps the initial windows static.
    bdp: BdpConfig | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.max_message_size <= 0xFFFFFFFF:
            raise ValueError("max_message_size must be in [0, 2**32)")
        if not 0 <= self.initial_window_size <= MAX_WINDOW:
            raise ValueError("initial_window_size must be in [0, 2**31)")
        if not 65_535 <= self.initial_connection_window_size <= MAX_WINDOW:
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


OVERSIZED_HEADERS = "peer header list size exceeded limit"  # grpc-go's words


class CallError(Exception):
    """Internal: the peer broke gRPC on one call."""

    def __init__(self, status: StatusCode, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = http_status


class StreamCall:
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


def check_header_size(conn: h2.connection.H2Connection, headers: list[gh.Header]) -> None:
    """Refuse to send a header list over the peer's SETTINGS_MAX_HEADER_LIST_SIZE (as grpc-go does)."""
    peer_limit = conn.remote_settings.max_header_list_size
    if peer_limit is not None and gh.header_list_size(headers) > peer_limit:
        raise gh.GrpcHeaderError(f"header list size to send violates the peer's maximum ({peer_limit})")
