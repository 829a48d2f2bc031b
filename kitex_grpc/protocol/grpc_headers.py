"""gRPC header fields over HTTP/2: values, metadata, and the header lists Kitex / grpc-go send.

Everything here is pure. Header lists are ``list[tuple[bytes, bytes]]`` with lower-case names, ready
for ``h2`` with outbound validation off (we validate user metadata ourselves, once).

Metadata, as the cores expose it, is a sequence of ``(key, value)`` pairs: keys are lower-case ASCII,
values are ``str`` for ordinary keys and ``bytes`` for keys ending in ``-bin`` (sent as unpadded base64,
PROTOCOL-HTTP2.md "Custom-Metadata").

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote, unquote

from kitex_grpc.errors import ProtocolError
from kitex_grpc.status import StatusCode

__all__ = [
    "DEFAULT_USER_AGENT",
    "HTTP_TO_GRPC_STATUS",
    "GrpcHeaderError",
    "Header",
    "Metadata",
    "MetadataValue",
    "build_request_headers",
    "build_response_headers",
    "build_trailers",
    "decode_binary_value",
    "decode_grpc_message",
    "decode_metadata",
    "decode_timeout",
    "encode_binary_value",
    "encode_grpc_message",
    "encode_metadata",
    "encode_timeout",
    "header_list_size",
    "is_reserved_header",
    "parse_content_type",
    "parse_grpc_status",
    "split_method_path",
]

Header = tuple[bytes, bytes]
MetadataValue = str | bytes
Metadata = Sequence[tuple[str, MetadataValue]]

DEFAULT_USER_AGENT = "kitex-grpc-python/0.1.0"


class GrpcHeaderError(ProtocolError):
    """A header value is malformed; ``grpc_status`` is the status to end the call with."""

    def __init__(self, detail: str, grpc_status: StatusCode = StatusCode.INTERNAL) -> None:
        super().__init__(detail, grpc_status=grpc_status)


# --- grpc-timeout -------------------------------------------------------------------------------

_MAX_TIMEOUT_VALUE = 99_999_999  # the spec allows at most 8 digits
# Units from finest to coarsest, in nanoseconds (grpc-go encodeTimeout picks the first that fits).
_TIMEOUT_UNITS: tuple[tuple[int, str], ...] = (
    (1, "n"),
    (1_000, "u"),
    (1_000_000, "m"),
    (1_000_000_000, "S"),
    (60_000_000_000, "M"),
    (3_600_000_000_000, "H"),
)
_UNIT_NANOS = {unit: nanos for nanos, unit in _TIMEOUT_UNITS}


def encode_timeout(seconds: float) -> str:
    """``grpc-timeout`` for a remaining time, rounded up in the finest unit that fits 8 digits."""
    if seconds <= 0:
        return "0n"
    nanos = max(1, math.ceil(seconds * 1e9 - 1e-6))  # round up, ignoring float noise
    for unit_nanos, unit in _TIMEOUT_UNITS:
        value = -(-nanos // unit_nanos)
        if value <= _MAX_TIMEOUT_VALUE:
            return f"{value}{unit}"
    # Longer than 99,999,999 hours: clamp, as no caller can mean it.
    return f"{_MAX_TIMEOUT_VALUE}H"


def decode_timeout(value: str | bytes) -> float:
    """Seconds from a ``grpc-timeout`` value; raises :class:`GrpcHeaderError` when malformed."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    digits = text[:-1]
    unit_nanos = _UNIT_NANOS.get(text[-1:])
    if unit_nanos is None or not digits or len(digits) > 8 or not digits.isdigit() or not digits.isascii():
        raise GrpcHeaderError(f"malformed grpc-timeout: {text!r}")
    return int(digits) * unit_nanos / 1e9


# --- grpc-message ---------------------------------------------------------------------------------

# Printable ASCII except '%' passes through; everything else (as UTF-8 bytes) is %XX (PROTOCOL-HTTP2.md).
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def encode_grpc_message(message: str) -> str:
    """Percent-encode a status message for ``grpc-message``."""
    return quote(message, safe=_MESSAGE_SAFE, errors="replace")


def decode_grpc_message(value: str | bytes) -> str:
    """Undo :func:`encode_grpc_message`; malformed escapes are kept literally, as grpc-go does."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if "%" not in text:
        return text
    return unquote(text, errors="replace")


# --- grpc-status ----------------------------------------------------------------------------------


def parse_grpc_status(value: str | bytes) -> int:
    """The integer in a ``grpc-status`` value (kept raw: Kitex sends non-standard codes)."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if not text or len(text) > 10 or not text.isdigit() or not text.isascii():
        raise GrpcHeaderError(f"malformed grpc-status: {text!r}")
    return int(text)


# HTTP status to gRPC status when a response carries no grpc-status (doc/http-grpc-status-mapping.md).
HTTP_TO_GRPC_STATUS: dict[int, StatusCode] = {
    400: StatusCode.INTERNAL,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.UNIMPLEMENTED,
    429: StatusCode.UNAVAILABLE,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.UNAVAILABLE,
}


# --- binary metadata ------------------------------------------------------------------------------


def encode_binary_value(value: bytes) -> bytes:
    """Unpadded standard base64, as grpc-go writes ``-bin`` values."""
    return base64.b64encode(value).rstrip(b"=")


def decode_binary_value(value: str | bytes) -> bytes:
    """Decode a ``-bin`` value sent padded or unpadded."""
    raw = value.encode("ascii", "replace") if isinstance(value, str) else value
    missing = -len(raw) % 4
    if missing:
        raw += b"=" * missing
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GrpcHeaderError(f"malformed binary metadata value: {value!r}") from exc


# --- metadata -------------------------------------------------------------------------------------

# Set by the transport itself; never taken from, or given to, user metadata (grpc-go isReservedHeader,
# plus grpc-accept-encoding which the cores own, and the HTTP/2 connection-specific fields).
_RESERVED = frozenset(
    {
        "content-type",
        "user-agent",
        "te",
        "grpc-message-type",
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-message",
        "grpc-status",
        "grpc-timeout",
        "grpc-status-details-bin",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_RESERVED_BYTES = frozenset(name.encode() for name in _RESERVED)
_KEY_RE = re.compile(r"[0-9a-z_.\-]+")
_VALUE_RE = re.compile(r"[\x20-\x7e]*")


def is_reserved_header(name: str) -> bool:
    """True for pseudo-headers and the fields gRPC itself sets."""
    return name.startswith(":") or name in _RESERVED


def encode_metadata(metadata: Iterable[tuple[str, MetadataValue]]) -> list[Header]:
    """Validate user metadata and turn it into header fields; reserved keys are dropped silently.

    Keys are lower-cased (as grpc-go's ``metadata.Pairs`` does). Raises :class:`GrpcHeaderError` for
    an illegal key or value, before anything is sent.
    """
    out: list[Header] = []
    for key, value in metadata:
        key = key.lower()
        if key.startswith(":") or key in _RESERVED:
            continue
        if _KEY_RE.fullmatch(key) is None:
            raise GrpcHeaderError(f"header key {key!r} contains illegal characters")
        if key.endswith("-bin"):
            raw = value.encode() if isinstance(value, str) else bytes(value)
            out.append((key.encode("ascii"), encode_binary_value(raw)))
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if _VALUE_RE.fullmatch(text) is None:
            raise GrpcHeaderError(f"header key {key!r} contains value with non-printable ASCII characters")
        out.append((key.encode("ascii"), text.encode("ascii")))
    return out


def decode_metadata(headers: Iterable[Header]) -> tuple[tuple[str, MetadataValue], ...]:
    """User metadata from received header fields: reserved fields skipped, ``-bin`` values decoded."""
    out: list[tuple[str, MetadataValue]] = []
    for name, value in headers:
        if name[:1] == b":" or name in _RESERVED_BYTES:
            continue
        key = name.decode("ascii", "replace")
        if name.endswith(b"-bin"):
            out.append((key, decode_binary_value(value)))
        else:
            out.append((key, value.decode("utf-8", "replace")))
    return tuple(out)


def header_list_size(headers: Iterable[Header]) -> int:
    """The HTTP/2 size of a header list (RFC 9113 §6.5.2: name + value + 32 per field)."""
    return sum(len(name) + len(value) + 32 for name, value in headers)


# --- :path ----------------------------------------------------------------------------------------


def split_method_path(path: str) -> tuple[str, str]:
    """``(service name, method name)`` of a gRPC ``:path`` ``/package.Service/Method``.

    The package is dropped: Kitex looks services up by name and ignores the package
    (``pkg/remote/trans/nphttp2/server_handler.go``). A path without a service gives ``""`` for it.
    """
    service_path, _, method_name = path.rpartition("/")
    return service_path.lstrip("/").rpartition(".")[2], method_name


# --- content-type ---------------------------------------------------------------------------------


def parse_content_type(value: str | bytes | None) -> str | None:
    """The content-subtype of a gRPC content-type, or ``None`` if it is not gRPC.

    ``application/grpc`` gives ``""``; ``application/grpc+proto`` gives ``"proto"``, ``+thrift`` gives
    ``"thrift"`` (Kitex picks its payload codec from this); ``;`` is accepted as a separator too.
    """
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    text = text.strip().lower()
    if not text.startswith("application/grpc"):
        return None
    rest = text[16:]
    if not rest:
        return ""
    if rest[0] in "+;":
        return rest[1:].strip()
    return None


def _content_type(subtype: str) -> bytes:
    return _CONTENT_TYPES.get(subtype) or (b"application/grpc+" + subtype.encode("ascii"))


_CONTENT_TYPES = {
    "": b"application/grpc",
    "proto": b"application/grpc+proto",
    "thrift": b"application/grpc+thrift",
}


# --- header lists -----------------------------------------------------------------------------------

_METHOD_POST: Header = (b":method", b"POST")
_SCHEME_HTTP: Header = (b":scheme", b"http")
_SCHEME_HTTPS: Header = (b":scheme", b"https")
_TE_TRAILERS: Header = (b"te", b"trailers")
_STATUS_200: Header = (b":status", b"200")
_CONTENT_TYPE_GRPC: Header = (b"content-type", b"application/grpc")
_DEFAULT_UA: Header = (b"user-agent", DEFAULT_USER_AGENT.encode())
_STATUS_FIELDS = {code: (b"grpc-status", str(int(code)).encode()) for code in StatusCode}


def _content_type_field(subtype: str) -> Header:
    if not subtype:
        return _CONTENT_TYPE_GRPC
    return (b"content-type", _content_type(subtype))


def build_request_headers(
    path: str,
    authority: str,
    *,
    scheme: str = "http",
    content_subtype: str = "",
    user_agent: str | None = None,
    timeout: float | None = None,
    encoding: str | None = None,
    accept_encoding: str | None = None,
    metadata: Metadata = (),
) -> list[Header]:
    """Request headers in the order grpc-go / Kitex write them, then user metadata.

    ``authority`` is what Kitex puts there: the destination service name. ``encoding`` is the
    message compression this call uses (``grpc-encoding``); ``accept_encoding`` is the comma list of
    encodings we can inflate (``grpc-accept-encoding``). Kitex sends both only with a compressor.
    """
    headers = [
        _METHOD_POST,
        _SCHEME_HTTPS if scheme == "https" else _SCHEME_HTTP,
        (b":path", path.encode("ascii")),
        (b":authority", authority.encode()),
        _content_type_field(content_subtype),
        _DEFAULT_UA if user_agent is None else (b"user-agent", user_agent.encode("ascii")),
        _TE_TRAILERS,
    ]
    if timeout is not None:
        headers.append((b"grpc-timeout", encode_timeout(timeout).encode("ascii")))
    if encoding is not None and encoding != "identity":
        headers.append((b"grpc-encoding", encoding.encode("ascii")))
    if accept_encoding:
        headers.append((b"grpc-accept-encoding", accept_encoding.encode("ascii")))
    if metadata:
        headers += encode_metadata(metadata)
    return headers


def build_response_headers(
    *,
    content_subtype: str = "",
    encoding: str | None = None,
    accept_encoding: str | None = None,
    metadata: Metadata = (),
) -> list[Header]:
    """Response headers: ``:status 200``, content-type, optional compression fields, user metadata."""
    headers = [_STATUS_200, _content_type_field(content_subtype)]
    if encoding is not None and encoding != "identity":
        headers.append((b"grpc-encoding", encoding.encode("ascii")))
    if accept_encoding:
        headers.append((b"grpc-accept-encoding", accept_encoding.encode("ascii")))
    if metadata:
        headers += encode_metadata(metadata)
    return headers


def build_trailers(
    status: StatusCode | int,
    message: str = "",
    *,
    metadata: Metadata = (),
    details: bytes | None = None,
    trailers_only: bool = False,
    content_subtype: str = "",
    http_status: int = 200,
) -> list[Header]:
    """Trailers: grpc-status, grpc-message (when non-empty), status details, user trailers.

    With ``trailers_only`` the list also opens the response (``:status`` and content-type first), for
    a call that fails before any response header was sent (PROTOCOL-HTTP2.md "Trailers-Only").
    """
    headers: list[Header] = []
    if trailers_only:
        headers.append(_STATUS_200 if http_status == 200 else (b":status", str(http_status).encode()))
        headers.append(_content_type_field(content_subtype))
    field = _STATUS_FIELDS.get(status) if isinstance(status, StatusCode) else None
    headers.append(field or (b"grpc-status", str(int(status)).encode()))
    if message:
        headers.append((b"grpc-message", encode_grpc_message(message).encode("ascii")))
    if details is not None:
        headers.append((b"grpc-status-details-bin", encode_binary_value(details)))
    if metadata:
        headers += encode_metadata(metadata)
    return headers
