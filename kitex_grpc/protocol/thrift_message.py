"""Strict binary Thrift message headers, TApplicationException bodies and Framed framing, sans-IO.

KITEX-WIRE.md §2. A message starts ``u32 (0x80010000 | type) | i32 nameLen | name | i32 seqid``; Kitex
never writes the old non-strict form and never accepts it, nor the compact protocol. Framed transport puts
a u32 byte count in front of each message; :class:`FramedDecoder` splits a TCP stream on those counts.

Method names and exception messages are UTF-8; undecodable bytes are kept as lone surrogates
(``surrogateescape``) so a decoded name can be echoed back byte for byte.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any, Final, TypeAlias, TypeVar

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.frames import StreamDecoder, u32_at

__all__ = [
    "FIXED_SIZE",
    "MAX_DEPTH",
    "MAX_FRAME_SIZE",
    "VERSION_1",
    "VERSION_MASK",
    "FramedDecoder",
    "MessageType",
    "TType",
    "decode_application_exception",
    "decode_message_begin",
    "encode_application_exception",
    "encode_framed",
    "encode_message_begin",
    "skip_value",
    "skip_values",
]

BytesLike: TypeAlias = bytes | bytearray | memoryview
_T = TypeVar("_T")

VERSION_1: Final = 0x80010000
VERSION_MASK: Final = 0xFFFF0000
_TYPE_MASK: Final = 0x000000FF
MAX_FRAME_SIZE: Final = 0x3FFFFFFF  # same bound as a TTHeader frame
MAX_DEPTH: Final = 64  # nesting allowed when skipping unknown values
_I32_MIN: Final = -(1 << 31)
_I32_MAX: Final = (1 << 31) - 1


class MessageType(enum.IntEnum):
    """Thrift message types on the wire (Kitex also uses 5 Stream and 6 Heartbeat internally)."""

    CALL = 1
    REPLY = 2
    EXCEPTION = 3
    ONEWAY = 4


class TType(enum.IntEnum):
    """Thrift binary protocol value types."""

    STOP = 0
    BOOL = 2
    BYTE = 3
    DOUBLE = 4
    I16 = 6
    I32 = 8
    I64 = 10
    STRING = 11
    STRUCT = 12
    MAP = 13
    SET = 14
    LIST = 15


_U32: Final = struct.Struct(">I")
_I32: Final = struct.Struct(">i")
_MSG_HEAD: Final = struct.Struct(">Ii")  # version|type, name length
_FIELD: Final = struct.Struct(">bh")  # field type, field id
_LIST_HEAD: Final = struct.Struct(">bi")  # element type, size
_MAP_HEAD: Final = struct.Struct(">bbi")  # key type, value type, size
_unpack_u32_from: Final = _U32.unpack_from
_unpack_i32_from: Final = _I32.unpack_from
FIXED_SIZE: Final[dict[int, int]] = {  # bytes of each fixed-size value type
    TType.BOOL: 1,
    TType.BYTE: 1,
    TType.DOUBLE: 8,
    TType.I16: 2,
    TType.I32: 4,
    TType.I64: 8,
}


def _check_i32(value: int, what: str) -> None:
    if not _I32_MIN <= value <= _I32_MAX:
        raise ProtocolError(f"thrift: {what} {value} is not an i32")


def _encode_name(name: str) -> bytes:
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"thrift: {name[:100]!r} is not encodable as UTF-8") from exc


# ------------------------------------------------------------------------------------ message header


def encode_message_begin(name: str, msg_type: int, seq_id: int) -> bytes:
    """The strict binary message header. An empty ``name`` is refused, as Kitex refuses to marshal it."""
    if not name:
        raise ProtocolError("thrift: empty method name")
    if not 0 < msg_type <= _TYPE_MASK:
        raise ProtocolError(f"thrift: invalid message type {msg_type}")
    _check_i32(seq_id, "seq id")
    raw = _encode_name(name)
    return _MSG_HEAD.pack(VERSION_1 | msg_type, len(raw)) + raw + _I32.pack(seq_id)


def decode_message_begin(buf: BytesLike, offset: int = 0) -> tuple[str, int, int, int]:
    """Decode a strict message header at ``offset``: ``(name, msg_type, seq_id, offset_after)``.

    ``msg_type`` is the raw low byte; checking it against the role (server: CALL/ONEWAY, client:
    REPLY/EXCEPTION) is the codec's job. An empty name is refused except on an EXCEPTION, which Kitex
    accepts without a name check (proxies may send one).
    """
    size = len(buf)
    if offset + 8 > size:
        raise ProtocolError("thrift: message header truncated")
    head, name_len = _MSG_HEAD.unpack_from(buf, offset)
    if head & VERSION_MASK != VERSION_1:
        raise ProtocolError(
            f"thrift: bad version in message header ({head:#x}); only strict binary is accepted"
        )
    msg_type = head & _TYPE_MASK
    start = offset + 8
    if name_len < 0 or start + name_len + 4 > size:
        raise ProtocolError("thrift: message header truncated")
    if name_len == 0 and msg_type != MessageType.EXCEPTION:
        raise ProtocolError("thrift: empty method name")
    end = start + name_len
    name = str(buf[start:end], "utf-8", "surrogateescape")  # a slice, not a memoryview: 3x cheaper
    seq_id: int = _unpack_i32_from(buf, end)[0]
    return name, msg_type, seq_id, end + 4


# ------------------------------------------------------------------------------ skipping and exceptions


def skip_value(buf: BytesLike, offset: int, ttype: int, depth: int = MAX_DEPTH) -> int:
    """Return the offset just past one binary-encoded value of type ``ttype`` that starts at ``offset``."""
    if depth <= 0:
        raise ProtocolError("thrift: depth limit exceeded")
    size = len(buf)
    fixed = FIXED_SIZE.get(ttype)
    if fixed is not None:
        end = offset + fixed
    elif ttype == TType.STRING:
        if offset + 4 > size:
            raise ProtocolError("thrift: buffer too short")
        length: int = _unpack_i32_from(buf, offset)[0]
        if length < 0:
            raise ProtocolError("thrift: negative size")
        end = offset + 4 + length
    elif ttype == TType.STRUCT:
        end = offset
        while True:
            if end >= size:
                raise ProtocolError("thrift: buffer too short")
            ftype = buf[end]
            if ftype == TType.STOP:
                return end + 1
            end = skip_value(buf, end + 3, ftype, depth - 1)
    elif ttype in (TType.LIST, TType.SET):
        if offset + 5 > size:
            raise ProtocolError("thrift: buffer too short")
        etype, count = _LIST_HEAD.unpack_from(buf, offset)
        end = skip_values(buf, offset + 5, count, (etype,), depth)
    elif ttype == TType.MAP:
        if offset + 6 > size:
            raise ProtocolError("thrift: buffer too short")
        ktype, vtype, count = _MAP_HEAD.unpack_from(buf, offset)
        end = skip_values(buf, offset + 6, count, (ktype, vtype), depth)
    else:
        raise ProtocolError(f"thrift: unknown data type {ttype}")
    if end > size:
        raise ProtocolError("thrift: buffer too short")
    return end


def skip_values(buf: BytesLike, offset: int, count: int, types: tuple[int, ...], depth: int) -> int:
    """Return the offset past ``count`` groups of values of ``types`` (a list's elements: one type; a
    map's entries: key and value types) that start at ``offset``. Nesting counts from ``depth``."""
    if count < 0:
        raise ProtocolError("thrift: negative size")
    sizes = [FIXED_SIZE.get(t) for t in types]
    size = len(buf)
    if None not in sizes:  # fixed-size elements: no walk needed
        end = offset + count * sum(s for s in sizes if s is not None)
        if end > size:
            raise ProtocolError("thrift: buffer too short")
        return end
    for _ in range(count):  # every element takes at least one byte, so a bogus count ends quickly
        for t in types:
            if offset >= size:
                raise ProtocolError("thrift: buffer too short")
            offset = skip_value(buf, offset, t, depth - 1)
    return offset


def encode_application_exception(message: str, type_id: int) -> bytes:
    """A TApplicationException struct body: field 1 message (string), field 2 type (i32), STOP."""
    _check_i32(type_id, "exception type")
    raw = _encode_name(message)
    return (
        _FIELD.pack(TType.STRING, 1)
        + _U32.pack(len(raw))
        + raw
        + _FIELD.pack(TType.I32, 2)
        + _I32.pack(type_id)
        + b"\x00"
    )


def decode_application_exception(body: BytesLike, offset: int = 0) -> tuple[str, int]:
    """Decode a TApplicationException struct at ``offset``: ``(message, type_id)``.

    Absent fields default to ``""`` and 0 (Unknown); fields with other ids or types are skipped.
    """
    message = ""
    type_id = 0
    size = len(body)
    with memoryview(body) as mv:
        while True:
            if offset >= size:
                raise ProtocolError("thrift: TApplicationException truncated")
            ftype = mv[offset]
            if ftype == TType.STOP:
                return message, type_id
            if offset + 3 > size:
                raise ProtocolError("thrift: TApplicationException truncated")
            fid = _FIELD.unpack_from(mv, offset)[1]
            offset += 3
            end = skip_value(mv, offset, ftype)
            if fid == 1 and ftype == TType.STRING:
                message = str(mv[offset + 4 : end], "utf-8", "surrogateescape")
            elif fid == 2 and ftype == TType.I32:
                type_id = _unpack_i32_from(mv, offset)[0]
            offset = end


# ------------------------------------------------------------------------------------------- framed


def encode_framed(payload: BytesLike, *, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """``u32 len(payload) | payload``: the Framed transport, and the frame inside TTHeaderFramed."""
    if len(payload) > max_frame_size:
        raise ProtocolError(f"framed: frame length {len(payload)} exceeds the limit {max_frame_size}")
    return _U32.pack(len(payload)) + payload


def _copy_span(buf: bytes, start: int, end: int) -> bytes:
    return buf[start:end]


class FramedDecoder(StreamDecoder):
    """Splits a byte stream of u32-length-prefixed frames; yields each frame's bytes without the prefix.

    The length is checked against ``max_frame_size`` as soon as its 4 bytes arrive, before any body is
    buffered. After a :class:`ProtocolError` (its own, or one a :meth:`receive_spans` builder raised)
    the decoder is unusable and every later call raises again; frames completed earlier in the failing
    call are carried by the error (a ``FramesBeforeError``).
    """

    __slots__ = ()

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not 0 <= max_frame_size <= 0xFFFFFFFF:
            raise ValueError("max_frame_size must be a u32")
        super().__init__(max_frame_size, "framed", 4)

    def receive_data(self, data: BytesLike) -> list[bytes]:
        """Feed bytes; return the frames they complete, in order."""
        return self._receive(data, _copy_span)

    def receive_spans(self, data: BytesLike, build: Callable[[bytes, int, int], _T]) -> list[_T]:
        """Feed bytes; return ``build(buf, start, end)`` for each frame they complete, in order.

        ``buf[start:end]`` is the frame without its length; ``build`` parses it in place, which spares
        a copy of the whole frame.
        """
        return self._receive(data, build)

    def _split(self, buf: bytes, frames: list[Any], build: Any) -> int:
        pos = 0
        size = len(buf)
        limit = self._max_frame_size
        while size - pos >= 4:
            length = u32_at(buf, pos)
            if length > limit:
                raise ProtocolError(f"framed: frame length {length} exceeds the limit {limit}")
            end = pos + 4 + length
            if end > size:
                break
            frames.append(build(buf, pos + 4, end))
            pos = end
        return pos
