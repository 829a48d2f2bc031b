"""Events of the gRPC-over-HTTP/2 cores (:mod:`kitex_grpc.protocol.h2_call`).

Facts, in the past tense: each is a frozen, keyword-only dataclass the core returns from
``receive_data`` (and, for :class:`WindowUpdated`, from the flush that follows it). Metadata is a tuple
of ``(key, value)`` with ``bytes`` values for ``-bin`` keys and ``str`` otherwise.

Terminal events for a call (after one of them the core forgets the stream): :class:`TrailersReceived`
(client), :class:`StreamReset`, :class:`CallRejected`; and, for every call at once, a
:class:`ConnectionTerminated` that is not graceful.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from dataclasses import dataclass

from kitex_grpc.status import StatusCode

__all__ = [
    "CallRejected",
    "CallStarted",
    "ConnectionTerminated",
    "Event",
    "HeadersReceived",
    "MessageReceived",
    "PingAcked",
    "PingReceived",
    "SettingsChanged",
    "StreamEnded",
    "StreamRefused",
    "StreamReset",
    "TrailersReceived",
    "WindowUpdated",
]

MetadataTuple = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base of every event."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CallStarted(Event):
    """Server: a valid gRPC request opened ``stream_id``.

    ``timeout`` is the remaining time in seconds from ``grpc-timeout`` (``None``: no deadline).
    ``content_subtype`` is ``""`` for ``application/grpc``, else e.g. ``"proto"`` or ``"thrift"``.
    ``encoding`` is the request's message compression, ``accept_encoding`` what the client inflates.
    """

    stream_id: int
    path: str
    authority: str
    metadata: MetadataTuple
    timeout: float | None
    content_type: str
    content_subtype: str
    encoding: str | None
    accept_encoding: tuple[str, ...]
    user_agent: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class HeadersReceived(Event):
    """Client: the response headers (not a trailers-only response) arrived."""

    stream_id: int
    metadata: MetadataTuple
    encoding: str | None
    content_type: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageReceived(Event):
    """One whole message, unframed and decompressed.

    ``flow_controlled_length`` is the receive window it holds: pass it to
    ``acknowledge_received(stream_id, n)`` once the message was consumed, to let the peer send more.
    ``compressed``: the message arrived with the compressed flag set (and was inflated).
    """

    stream_id: int
    data: bytes
    flow_controlled_length: int
    compressed: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamEnded(Event):
    """Server: the client half-closed the call (no more request messages)."""

    stream_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TrailersReceived(Event):
    """Client: the call ended with this status (also for a trailers-only response).

    ``status`` maps numbers gRPC does not define to UNKNOWN; ``raw_status`` keeps the number sent
    (Kitex sends 20 for an unknown service, which ``StatusCode`` spells ``KITEX_UNKNOWN_SERVICE``).
    """

    stream_id: int
    status: StatusCode
    raw_status: int
    message: str
    metadata: MetadataTuple
    details: bytes | None
    trailers_only: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamReset(Event):
    """RST_STREAM ended the stream; ``remote`` is false when this core sent it (h2 closed it for us)."""

    stream_id: int
    error_code: int
    remote: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamRefused(Event):
    """Server: a new stream over our MAX_CONCURRENT_STREAMS was refused with RST_STREAM(REFUSED_STREAM)
    (RFC 9113 §5.1.2); the request was never seen by the application and the client may retry it."""

    stream_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CallRejected(Event):
    """The core ended a call because the peer broke gRPC on it; the connection lives on.

    It has already answered: a server sent trailers (``http_status`` and ``status``) and, if the
    client was still sending, RST_STREAM(NO_ERROR) (for request headers over the header list limit:
    only RST_STREAM(FRAME_SIZE_ERROR), as grpc-go); a client sent RST_STREAM(CANCEL) (FRAME_SIZE_ERROR
    for response headers or trailers over the limit). The shell fails
    the call locally with ``status`` / ``message`` (a server shell that never saw :class:`CallStarted`
    for the stream only records it).
    """

    stream_id: int
    status: StatusCode
    message: str
    http_status: int = 200


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowUpdated(Event):
    """Buffered outbound data of ``stream_id`` went out; ``pending`` bytes are still buffered.

    Emitted only for streams that had data waiting for the peer's window, each time some of it was
    sent; a shell blocked on ``pending_bytes(stream_id)`` re-checks and wakes its writer.
    """

    stream_id: int
    pending: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PingReceived(Event):
    """The peer sent a PING (already acknowledged); for keepalive enforcement."""

    data: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class PingAcked(Event):
    """The peer acknowledged our PING carrying ``data``."""

    data: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionTerminated(Event):
    """The peer sent GOAWAY.

    ``graceful`` (error code 0, NO_ERROR): calls with ``stream_id <= last_stream_id`` go on and may
    finish; higher ones were never processed (safe to retry elsewhere); no new call may start.
    Otherwise the connection is dead: fail every call and close the transport after flushing.
    """

    error_code: int
    last_stream_id: int
    additional_data: bytes
    graceful: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class SettingsChanged(Event):
    """The peer changed settings; fields it did not change are ``None``."""

    max_concurrent_streams: int | None = None
    initial_window_size: int | None = None
    max_frame_size: int | None = None
    max_header_list_size: int | None = None
