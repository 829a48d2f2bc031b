"""Response metadata and compression of the gRPC call a handler serves (Kitex ``grpc.SetHeader`` ...).

Inside a handler on either gRPC server transport (``GRPC`` on grpcio, ``GRPC_H2``)::

    from kitex_grpc import grpc_meta

    grpc_meta.set_header({"x-shard": "7"})           # sent with the first reply message
    await grpc_meta.send_header({"x-now": "1"})      # merged with what set_header gave, sent now
    grpc_meta.set_trailer([("x-cost-bin", b"\\x01")])  # sent with the status, on success or failure

The names and rules are Kitex's (``pkg/remote/trans/nphttp2/grpc``: ``SetHeader``, ``SendHeader``,
``SetTrailer``), which are grpc-go's. On grpcio they map to ``context.send_initial_metadata`` (headers,
sent by :func:`send_header` or with the first message) and ``context.set_trailing_metadata``
(trailers). Keys are lower-case ``[0-9a-z_.-]``; a ``-bin`` key takes ``bytes`` (sent base64), any
other key printable ASCII ``str``. Keys gRPC itself uses (``grpc-*``, ``content-type``, pseudo-headers
...) are refused. :class:`MetadataError` (a ``ValueError``) names a bad key or value;
:class:`HeaderSentError` says the headers already went out (grpc-go answers the same misuse with an
error too). Outside a gRPC handler every function raises ``RuntimeError``.

Compression (gRPC's ``doc/compression.md``): :func:`request_encoding` is the request's
``grpc-encoding``, :func:`accepted_encodings` the client's ``grpc-accept-encoding``;
:func:`set_send_compressor` chooses the reply's encoding (grpc-go ``grpc.SetSendCompressor``; grpcio
``context.set_compression``) and :func:`disable_next_message_compression` sends the next message
uncompressed (grpcio's name). Without a choice a reply uses the request's encoding when the client
accepts it, identity otherwise. :func:`last_message_compressed` says whether the latest request
message arrived compressed (``None`` where the transport cannot tell: grpcio decompresses before
the handler and does not say).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable, Mapping
from typing import Final

from kitex_grpc.protocol.grpc_framing import SUPPORTED_ENCODINGS
from kitex_grpc.protocol.grpc_headers import is_reserved_header
from kitex_grpc.rpcinfo import Metadata, current

__all__ = [
    "HeaderSentError",
    "MetadataError",
    "MetadataLike",
    "ServerCallMeta",
    "accepted_encodings",
    "disable_next_message_compression",
    "last_message_compressed",
    "request_encoding",
    "send_header",
    "set_header",
    "set_send_compressor",
    "set_trailer",
    "validate_metadata",
]

MetadataLike = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]

_KEY = re.compile(r"[0-9a-z_.\-]+")
_VALUE = re.compile(r"[\x20-\x7e]*")


class MetadataError(ValueError):
    """A metadata key or value gRPC cannot carry."""


class HeaderSentError(RuntimeError):
    """Response headers were set or sent after they had already gone out."""


def validate_metadata(metadata: MetadataLike) -> Metadata:
    """The pairs of ``metadata``, checked as gRPC requires; raises :class:`MetadataError`."""
    pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
    out: Metadata = []
    for key, value in pairs:
        if not isinstance(key, str) or not key:
            raise MetadataError(f"metadata key must be a non-empty str, got {key!r}")
        if _KEY.fullmatch(key) is None:
            raise MetadataError(f"metadata key {key!r}: only lower-case letters, digits and '_.-' allowed")
        if is_reserved_header(key) or key.startswith("grpc-"):
            raise MetadataError(f"metadata key {key!r} is reserved for gRPC itself")
        if key.endswith("-bin"):
            if not isinstance(value, bytes | bytearray):
                raise MetadataError(f"metadata key {key!r} is binary (-bin): its value must be bytes")
            out.append((key, bytes(value)))
        else:
            if not isinstance(value, str) or _VALUE.fullmatch(value) is None:
                raise MetadataError(
                    f"metadata key {key!r}: the value must be a str of printable ASCII"
                    " (use a key ending in -bin for bytes)"
                )
            out.append((key, value))
    return out


class ServerCallMeta:
    """What a server transport exposes of one call to this module; each transport subclasses it."""

    __slots__ = ()

    def response_headers_sent(self) -> bool:
        raise NotImplementedError

    def add_response_headers(self, metadata: Metadata) -> None:
        """Keep ``metadata`` for the response headers (called before they are sent)."""
        raise NotImplementedError

    async def flush_response_headers(self) -> None:
        """Send the response headers now."""
        raise NotImplementedError

    def request_encoding(self) -> str | None:
        raise NotImplementedError

    def accepted_encodings(self) -> tuple[str, ...]:
        raise NotImplementedError

    def set_send_encoding(self, encoding: str | None) -> None:
        raise NotImplementedError

    def disable_next_message_compression(self) -> None:
        raise NotImplementedError

    def last_message_compressed(self) -> bool | None:
        raise NotImplementedError


_current: Final[contextvars.ContextVar[ServerCallMeta | None]] = contextvars.ContextVar(
    "kitex_grpc_call_meta", default=None
)


# For server transports: ``bind(meta)`` makes ``meta`` the call the current task serves (the
# ContextVar's own method: no Python frame on the per-call path).
bind: Final = _current.set


def _call() -> ServerCallMeta:
    meta = _current.get()
    if meta is None:
        raise RuntimeError("grpc_meta: no gRPC call is being served here (call it inside a handler)")
    return meta


def set_header(metadata: MetadataLike) -> None:
    """Add response headers; they go out with the first message or :func:`send_header`."""
    meta = _call()
    pairs = validate_metadata(metadata)
    if meta.response_headers_sent():
        raise HeaderSentError("grpc_meta.set_header: the response headers were already sent")
    meta.add_response_headers(pairs)


async def send_header(metadata: MetadataLike | None = None) -> None:
    """Send the response headers now, with ``metadata`` added to what :func:`set_header` gave."""
    meta = _call()
    pairs = validate_metadata(metadata) if metadata is not None else []
    if meta.response_headers_sent():
        raise HeaderSentError("grpc_meta.send_header: the response headers were already sent")
    if pairs:
        meta.add_response_headers(pairs)
    await meta.flush_response_headers()


def set_trailer(metadata: MetadataLike) -> None:
    """Add response trailers, sent with the call's status (success or failure).

    They are kept in ``rpcinfo.current().response_metadata``, where a handler could append trailers
    before this function existed.
    """
    _call()
    pairs = validate_metadata(metadata)
    ri = current()
    assert ri is not None  # a bound call always runs under its RPCInfo
    ri.response_metadata.extend(pairs)


def request_encoding() -> str | None:
    """The request's ``grpc-encoding`` (``"gzip"`` ...), ``None`` for identity or unknown (grpcio)."""
    return _call().request_encoding()


def accepted_encodings() -> tuple[str, ...]:
    """The encodings the client listed in ``grpc-accept-encoding`` (grpc-go ClientSupportedCompressors)."""
    return _call().accepted_encodings()


def set_send_compressor(name: str) -> None:
    """Compress the reply messages with ``name`` (``"identity"`` for none); before the headers go out.

    Raises ``ValueError`` for an encoding this side lacks or the client did not list in
    ``grpc-accept-encoding`` (when it listed any), as grpc-go's ``SetSendCompressor`` does.
    """
    meta = _call()
    if name not in SUPPORTED_ENCODINGS:
        raise ValueError(f"grpc_meta.set_send_compressor: unsupported encoding {name!r}")
    accepted = meta.accepted_encodings()
    if name != "identity" and accepted and name not in accepted:
        raise ValueError(
            f"grpc_meta.set_send_compressor: the client does not accept {name!r} (it accepts {accepted})"
        )
    if meta.response_headers_sent():
        raise HeaderSentError("grpc_meta.set_send_compressor: the response headers were already sent")
    meta.set_send_encoding(None if name == "identity" else name)


def disable_next_message_compression() -> None:
    """Send the handler's next reply message uncompressed (the call's encoding stays)."""
    _call().disable_next_message_compression()


def last_message_compressed() -> bool | None:
    """Whether the latest request message arrived compressed; ``None`` where unknown (grpcio)."""
    return _call().last_message_compressed()
