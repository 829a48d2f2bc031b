"""Per-connection protocol sniffing, sans-IO (KITEX-WIRE.md §1.6).

A Kitex server peeks the first 8 bytes of the first request on a connection and fixes the handler for
the connection's lifetime; every protocol shares one port. :func:`detect` makes that decision, in
Kitex's order:

1. ``"PRI * HT"`` (the first 8 bytes of the HTTP/2 client preface) → gRPC over HTTP/2;
2. TTHeader magic with the Streaming flag → TTHeader Streaming;
3. the default handler's per-message tests (``default_codec.go DecodeMeta``/``checkPayload``):
   TTHeader magic at offset 4, MeshHeader magic at 0, strict Thrift binary at 0 (Buffered),
   strict Thrift binary at 4 (Framed), Kitex Protobuf magic at 4 (always framed).

Inside a TTHeader frame :func:`detect_payload` runs the tests of step 3 on the payload's first 8
bytes. Anything else fails like Kitex: ``invalid payload (first4Bytes=0x..., second4Bytes=0x...)``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import enum
import struct
from typing import TypeAlias

from kitex_grpc.errors import ProtocolError

__all__ = [
    "DETECTION_SIZE",
    "HTTP2_PREFACE_PREFIX",
    "DetectedProtocol",
    "PayloadKind",
    "detect",
    "detect_payload",
]

BytesLike: TypeAlias = bytes | bytearray | memoryview

DETECTION_SIZE = 8
HTTP2_PREFACE_PREFIX = b"PRI * HT"

_MASK = 0xFFFF0000
_TTHEADER = 0x10000000
_MESH_HEADER = 0xFFAF0000
_THRIFT_V1 = 0x80010000
_PROTOBUF_V1 = 0x90010000
_STREAMING_FLAG = 0x0002
_TWO_U32 = struct.Struct(">II")


class DetectedProtocol(enum.Enum):
    """What a connection speaks, decided from its first bytes."""

    HTTP2 = "http2"  # gRPC
    TTHEADER_STREAMING = "ttheader_streaming"
    TTHEADER = "ttheader"  # followed by a payload that detect_payload() classifies
    MESH_HEADER = "mesh_header"  # Kitex decodes it but never writes it; kitex-grpc does not support it
    FRAMED = "framed"  # u32 length + strict binary Thrift
    BUFFERED = "buffered"  # strict binary Thrift, no framing (Kitex's PurePayload)
    KITEX_PROTOBUF = "kitex_protobuf"  # u32 length + Kitex Protobuf (always framed)


class PayloadKind(enum.Enum):
    """The payload after a TTHeader, which also names the client's transport."""

    THRIFT = "thrift"  # strict binary Thrift, unframed: transport TTHeader
    THRIFT_FRAMED = "thrift_framed"  # u32 length + strict binary Thrift: transport TTHeaderFramed
    KITEX_PROTOBUF = "kitex_protobuf"  # u32 length + Kitex Protobuf: transport TTHeaderFramed


def _invalid(first: int, second: int) -> ProtocolError:
    return ProtocolError(f"invalid payload (first4Bytes={first:#x}, second4Bytes={second:#x})")


def detect(first_bytes: BytesLike) -> DetectedProtocol | None:
    """Classify a new connection from its first bytes; ``None`` until 8 bytes are available.

    Raises :class:`ProtocolError` when the bytes match no protocol Kitex accepts (non-strict Thrift,
    compact Thrift, Apache THeader, HTTP/1 and the like).
    """
    if len(first_bytes) < DETECTION_SIZE:
        return None
    if first_bytes[:DETECTION_SIZE] == HTTP2_PREFACE_PREFIX:
        return DetectedProtocol.HTTP2
    first, second = _TWO_U32.unpack_from(first_bytes, 0)
    if second & _MASK == _TTHEADER:
        return DetectedProtocol.TTHEADER_STREAMING if second & _STREAMING_FLAG else DetectedProtocol.TTHEADER
    if first & _MASK == _MESH_HEADER:
        return DetectedProtocol.MESH_HEADER
    if first & _MASK == _THRIFT_V1:
        return DetectedProtocol.BUFFERED
    if second & _MASK == _THRIFT_V1:
        return DetectedProtocol.FRAMED
    if second & _MASK == _PROTOBUF_V1:
        return DetectedProtocol.KITEX_PROTOBUF
    raise _invalid(first, second)


def detect_payload(first8: BytesLike) -> PayloadKind:
    """Classify the payload of a TTHeader frame from its first 8 bytes (Kitex's ``checkPayload``)."""
    if len(first8) < DETECTION_SIZE:
        raise ProtocolError(f"ttheader payload of {len(first8)} bytes is too short to detect")
    first, second = _TWO_U32.unpack_from(first8, 0)
    if first & _MASK == _THRIFT_V1:
        return PayloadKind.THRIFT
    if second & _MASK == _THRIFT_V1:
        return PayloadKind.THRIFT_FRAMED
    if second & _MASK == _PROTOBUF_V1:
        return PayloadKind.KITEX_PROTOBUF
    raise _invalid(first, second)
