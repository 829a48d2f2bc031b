"""The Kitex Protobuf payload (non-gRPC protobuf over TCP), sans-IO (KITEX-WIRE.md §2, last bullet).

::

    u32 len | u32 (0x90010000 | msgType) | u32 nameLen | name | u32 seqid | protobuf bytes

Checked against Kitex's ``pkg/remote/codec/protobuf/protobuf.go`` and ``pkg/remote/codec/default_codec.go``:

* ``len`` does **not** count itself. The protobuf codec writes no length; the default codec reserves the
  4-byte framed field, encodes the payload after it and stores ``bytes written - header - 4``
  (``defaultCodec.Encode``). The reader takes it as the payload length and reads
  ``len - 8 - (4 + nameLen)`` protobuf bytes (``protobufCodec.Unmarshal``, ``metaInfoFixLen = 8``).
  Kitex Protobuf is always framed: alone (Framed) or after a TTHeader (TTHeaderFramed).
* ``seqid`` is written as ``uint32(int32 seqID)`` and read back as ``int32(u32)``: four bytes that mean
  an i32, so this module exposes it as a signed i32.
* ``msgType`` is the low 16 bits (``FrontMask``); the magic check masks the high 16 bits.
* An empty method name is refused on both sides (``codecutils.ReadString``: "invalid string length").

An EXCEPTION message carries ``ErrorProto {int32 TypeID = 1; string Message = 2;}`` (proto3,
``error.proto``), encoded and decoded here by hand.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import struct
from typing import NamedTuple, TypeAlias

from kitex_grpc.errors import ProtocolError

__all__ = [
    "PROTOBUF_V1_MAGIC",
    "KitexProtobufMessage",
    "decode_error_proto",
    "decode_message",
    "encode_error_proto",
    "encode_message",
    "encode_message_prefix",
]

BytesLike: TypeAlias = bytes | bytearray | memoryview

PROTOBUF_V1_MAGIC = 0x90010000
_MAGIC_MASK = 0xFFFF0000
_TYPE_MASK = 0x0000FFFF
_META_FIX_LEN = 8  # magic|type + seqid
_MAX_LEN = 0xFFFFFFFF
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1

_U32 = struct.Struct(">I")
_HEAD = struct.Struct(">III")  # len, magic|type, name length
_I32 = struct.Struct(">i")
_unpack_i32_from = _I32.unpack_from


class KitexProtobufMessage(NamedTuple):
    """A decoded Kitex Protobuf message; ``body`` is the serialized protobuf (or ErrorProto) bytes."""

    name: str
    msg_type: int
    seq_id: int
    body: bytes


def encode_message_prefix(name: str, msg_type: int, seq_id: int, body_size: int) -> bytes:
    """Everything before the protobuf bytes of a message whose body is ``body_size`` bytes long."""
    if not name:
        raise ProtocolError("kitex protobuf: empty method name")
    if not 0 < msg_type <= _TYPE_MASK:
        raise ProtocolError(f"kitex protobuf: invalid message type {msg_type}")
    if not _I32_MIN <= seq_id <= _I32_MAX:
        raise ProtocolError(f"kitex protobuf: seq id {seq_id} is not an i32")
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"kitex protobuf: {name[:100]!r} is not encodable as UTF-8") from exc
    length = _META_FIX_LEN + 4 + len(raw) + body_size
    if length > _MAX_LEN:
        raise ProtocolError(f"kitex protobuf: message length {length} does not fit a u32")
    return _HEAD.pack(length, PROTOBUF_V1_MAGIC | msg_type, len(raw)) + raw + _I32.pack(seq_id)


def encode_message(name: str, msg_type: int, seq_id: int, body: BytesLike) -> bytes:
    """One complete message, ``len`` prefix included."""
    return encode_message_prefix(name, msg_type, seq_id, len(body)) + body


def decode_message(buf: BytesLike, *, framed: bool = True) -> KitexProtobufMessage:
    """Decode exactly one message.

    With ``framed`` (the default) ``buf`` starts with the u32 ``len``, which must account for every
    following byte. Without it ``buf`` starts at the magic, as a :class:`FramedDecoder` frame does.
    """
    with memoryview(buf) as mv:
        size = len(mv)
        pos = 0
        if framed:
            if size < 4:
                raise ProtocolError("kitex protobuf: message truncated")
            length = _U32.unpack_from(mv, 0)[0]
            if length != size - 4:
                raise ProtocolError(
                    f"kitex protobuf: length {length} does not match the {size - 4} bytes given"
                )
            pos = 4
        if pos + 8 > size:
            raise ProtocolError("kitex protobuf: message truncated")
        head, name_len = struct.unpack_from(">II", mv, pos)
        if head & _MAGIC_MASK != PROTOBUF_V1_MAGIC:
            raise ProtocolError(f"kitex protobuf: bad version in protobuf Unmarshal ({head:#x})")
        if name_len == 0:
            raise ProtocolError("kitex protobuf: invalid string length in ReadString")
        start = pos + 8
        end = start + name_len
        if end + 4 > size:
            raise ProtocolError("kitex protobuf: message truncated")
        name = str(mv[start:end], "utf-8", "surrogateescape")
        seq_id: int = _unpack_i32_from(mv, end)[0]
        return KitexProtobufMessage(name, head & _TYPE_MASK, seq_id, bytes(mv[end + 4 :]))


# ------------------------------------------------------------------------------------------ ErrorProto


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_error_proto(type_id: int, message: str) -> bytes:
    """``ErrorProto{TypeID, Message}`` as Go's proto.Marshal writes it: field order, zero values left out."""
    if not _I32_MIN <= type_id <= _I32_MAX:
        raise ProtocolError(f"kitex protobuf: ErrorProto TypeID {type_id} is not an int32")
    out = bytearray()
    if type_id:
        out.append(0x08)  # field 1, varint; a negative int32 is sign-extended to 10 bytes
        out += _varint(type_id & 0xFFFFFFFFFFFFFFFF)
    if message:
        try:
            raw = message.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ProtocolError("kitex protobuf: ErrorProto Message is not valid UTF-8") from exc
        out.append(0x12)  # field 2, length-delimited
        out += _varint(len(raw))
        out += raw
    return bytes(out)


def _read_varint(mv: memoryview, pos: int, size: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while pos < size and shift < 70:
        byte = mv[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
    raise ProtocolError("kitex protobuf: bad varint in ErrorProto")


def decode_error_proto(buf: BytesLike) -> tuple[int, str]:
    """Decode an ErrorProto: ``(type_id, message)``; unknown fields are skipped, the last value wins."""
    type_id = 0
    message = ""
    with memoryview(buf) as mv:
        size = len(mv)
        pos = 0
        while pos < size:
            key, pos = _read_varint(mv, pos, size)
            number, wire_type = key >> 3, key & 7
            if number == 0:
                raise ProtocolError("kitex protobuf: invalid field number 0 in ErrorProto")
            if wire_type == 0:
                value, pos = _read_varint(mv, pos, size)
                if number == 1:
                    type_id = value & 0xFFFFFFFF
                    type_id -= (type_id & 0x80000000) << 1  # Go: int32(v)
            elif wire_type == 2:
                length, pos = _read_varint(mv, pos, size)
                end = pos + length
                if end > size:
                    raise ProtocolError("kitex protobuf: truncated ErrorProto")
                if number == 2:
                    try:
                        message = str(mv[pos:end], "utf-8")
                    except UnicodeDecodeError as exc:
                        raise ProtocolError(
                            "kitex protobuf: ErrorProto Message is not valid UTF-8"
                        ).with_cause(exc) from exc
                pos = end
            elif wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
                if pos > size:
                    raise ProtocolError("kitex protobuf: truncated ErrorProto")
            else:
                raise ProtocolError(f"kitex protobuf: unsupported wire type {wire_type} in ErrorProto")
    return type_id, message
