"""TTHeader framing over TCP, sans-IO (KITEX-WIRE.md §1).

One frame on the wire, all integers big-endian::

    LENGTH u32 | MAGIC u16 = 0x1000 | FLAGS u16 | SEQ i32 | HEADER_SIZE u16 (4-byte words)
    | PROTOCOL_ID u8 | NUM_TRANSFORMS u8 | transform ids | info blocks | zero padding | payload

``LENGTH`` counts every byte after itself. :func:`encode_frame` writes the info blocks in the order
Kitex does (ACL token, string key/values, int key/values, padding) and keeps dict insertion order inside
a block, so its output is deterministic. :class:`TTHeaderFrameDecoder` turns arbitrary chunks of a TCP
stream into :class:`Frame` values; it checks the length prefix, the magic and the header size as soon as
their bytes arrive, before it buffers a body, so a hostile 1 GiB length fails at once.

Strings are UTF-8. Go strings may hold any bytes, so undecodable bytes are kept as lone surrogates
(``surrogateescape``) and written back unchanged: decoding then re-encoding a frame is byte-exact.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeAlias, TypeVar

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.frames import StreamDecoder, i32_at, u32_at

__all__ = [
    "ACCEPTED_PROTOCOL_IDS",
    "GDPR_TOKEN_KEY",
    "MAGIC",
    "MAGIC_MASK",
    "MAX_FRAME_SIZE",
    "MAX_HEADER_SIZE",
    "MAX_STRING_SIZE",
    "PREFIX_SIZE",
    "TTHEADER_MAGIC",
    "Frame",
    "HeaderFlags",
    "HeaderInfo",
    "InfoID",
    "IntKey",
    "ProtocolID",
    "SpanBuilder",
    "TTHeader",
    "TTHeaderFrameDecoder",
    "decode_frame",
    "decode_header_info",
    "encode_frame",
    "encode_frame_header",
    "is_ttheader",
    "rpc_timeout_seconds",
]

BytesLike: TypeAlias = bytes | bytearray | memoryview
_T = TypeVar("_T")

MAGIC: Final = 0x1000  # the u16 at offset 4
TTHEADER_MAGIC: Final = 0x10000000  # the same magic seen as the u32 at offset 4 with FLAGS = 0
MAGIC_MASK: Final = 0xFFFF0000
PREFIX_SIZE: Final = 14  # LENGTH .. HEADER_SIZE
MAX_FRAME_SIZE: Final = 0x3FFFFFFF  # largest LENGTH accepted (gopkg ttheader MaxFrameSize)
MAX_HEADER_SIZE: Final = 4 * 0xFFFF  # header-info area in bytes (gopkg ttheader MaxHeaderSize)
MAX_STRING_SIZE: Final = 0xFFFF  # each key, value and ACL token (u16 length)
_MAX_COUNT: Final = 0xFFFF  # entries in one key/value block (u16 count)
_I32_MIN: Final = -(1 << 31)
_I32_MAX: Final = (1 << 31) - 1

# Kitex's key for the ACL token block: metainfo's transient prefix + "gdpr-token" (gopkg ttheader/metakey.go).
GDPR_TOKEN_KEY = "RPC_TRANSIT_gdpr-token"


class HeaderFlags(enum.IntFlag):
    """Bits of the FLAGS field. Unary Kitex traffic uses 0."""

    SUPPORT_OUT_OF_ORDER = 0x01
    STREAMING = 0x02  # TTHeader Streaming (a different handler on the server)
    DUPLEX_REVERSE = 0x08
    SASL = 0x10


class ProtocolID(enum.IntEnum):
    """The PROTOCOL ID byte. Kitex always writes THRIFT_BINARY, even before a Kitex Protobuf payload."""

    THRIFT_BINARY = 0x00
    THRIFT_COMPACT = 0x02  # rejected by the decoder
    THRIFT_COMPACT_V2 = 0x03  # accepted for compatibility only
    KITEX_PROTOBUF = 0x04
    THRIFT_STRUCT = 0x10  # TTHeader Streaming only
    PROTOBUF_STRUCT = 0x11  # TTHeader Streaming only


ACCEPTED_PROTOCOL_IDS: frozenset[int] = frozenset(
    {
        ProtocolID.THRIFT_BINARY,
        ProtocolID.THRIFT_COMPACT_V2,
        ProtocolID.KITEX_PROTOBUF,
        ProtocolID.THRIFT_STRUCT,
        ProtocolID.PROTOBUF_STRUCT,
    }
)


class InfoID(enum.IntEnum):
    """The id byte that starts each block of the header-info area."""

    PADDING = 0x00
    KEY_VALUE = 0x01
    INT_KEY_VALUE = 0x10
    ACL_TOKEN = 0x11


class IntKey(enum.IntEnum):
    """INT_KEY_VALUE keys (``pkg/remote/transmeta/metakey.go``, ``gopkg:protocol/ttheader/metakey.go``)."""

    MESH_VERSION = 0
    TRANSPORT_TYPE = 1
    LOG_ID = 2
    FROM_SERVICE = 3
    FROM_CLUSTER = 4
    FROM_IDC = 5
    TO_SERVICE = 6
    TO_CLUSTER = 7
    TO_IDC = 8
    TO_METHOD = 9
    ENV = 10
    DEST_ADDRESS = 11
    RPC_TIMEOUT = 12
    READ_TIMEOUT = 13
    RING_HASH_KEY = 14
    DDP_TAG = 15
    WITH_MESH_HEADER = 16
    CONNECT_TIMEOUT = 17
    SPAN_CONTEXT = 18
    SHORT_CONNECTION = 19
    FROM_METHOD = 20
    STRESS_TAG = 21
    MSG_TYPE = 22
    HTTP_CONTENT_TYPE = 23
    RAW_RING_HASH_KEY = 24
    LB_TYPE = 25
    CLUSTER_SHARD_ID = 26  # gopkg only
    FRAME_TYPE = 27  # gopkg only; TTHeader Streaming
    STREAM_TIMEOUT = 28  # gopkg only; TTHeader Streaming whole-stream timeout in ms


@dataclass(frozen=True, kw_only=True, slots=True)
class TTHeader:
    """Everything in a TTHeader frame except the payload.

    ``str_info`` holds the KEY_VALUE block; an ACL token block is carried as the key
    :data:`GDPR_TOKEN_KEY` in it, in both directions. ``int_info`` holds the INT_KEY_VALUE block;
    keys are plain ints, and :class:`IntKey` members look them up.
    """

    flags: int = 0
    seq_id: int = 0
    protocol_id: int = ProtocolID.THRIFT_BINARY
    str_info: Mapping[str, str] = field(default_factory=dict)
    int_info: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Frame:
    """One complete TTHeader frame: its header and its payload (Thrift or Kitex Protobuf bytes)."""

    header: TTHeader
    payload: bytes


_PREFIX = struct.Struct(">IHHiH")  # LENGTH, MAGIC, FLAGS, SEQ, HEADER_SIZE
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U16U16 = struct.Struct(">HH")
_pack_prefix = _PREFIX.pack
_unpack_prefix_from = _PREFIX.unpack_from
_pack_u16 = _U16.pack
_unpack_u16_from = _U16.unpack_from
_unpack_u32_from = _U32.unpack_from
_unpack_u16u16_from = _U16U16.unpack_from
_PADDING = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")  # indexed by info size % 4


def is_ttheader(first8: BytesLike) -> bool:
    """Whether the u32 at offset 4 carries the TTHeader magic (Kitex's ``IsTTHeader``)."""
    return len(first8) >= 8 and _unpack_u32_from(first8, 4)[0] & MAGIC_MASK == TTHEADER_MAGIC


_I64_DIGITS: Final = 19  # decimal digits of the largest int64, 9223372036854775807
_I64_MAX: Final = (1 << 63) - 1


def rpc_timeout_seconds(value: str | None) -> float | None:
    """The RPC timeout of int key 12 (milliseconds) in seconds, read as a Kitex server reads it.

    Kitex parses the value with ``strconv.Atoi`` and ignores it when that fails, whether the text is
    not a decimal integer or the number does not fit an int64 (``pkg/transmeta/ttheader.go
    serverTTHeaderHandler.ReadMeta``); a timeout of 0 or less means none (``server/middlewares.go
    serverTimeoutMW``). Every such value gives ``None``: the request is served without a deadline.
    """
    if not value:
        return None
    digits = value[1:] if value[0] == "+" or value[0] == "-" else value
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    if len(digits.lstrip("0")) > _I64_DIGITS:
        return None  # out of int64 range (and never an int() of thousands of digits)
    ms = int(value)
    if ms <= 0 or ms > _I64_MAX:
        return None
    return ms / 1000


# --------------------------------------------------------------------------------------------- encode


def _encode_str(out: bytearray, value: str, what: str) -> None:
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"ttheader: {what} {value[:100]!r} is not encodable as UTF-8") from exc
    if len(raw) > MAX_STRING_SIZE:
        raise ProtocolError(
            f"ttheader: {what} exceeded {MAX_STRING_SIZE}B max size "
            f"(actual: {len(raw)}B, preview: {value[:100]!r})"
        )
    out += _pack_u16(len(raw))
    out += raw


def _encode_info(header: TTHeader) -> bytearray:
    """PROTOCOL ID, NUM TRANSFORMS (always 0), the info blocks in Kitex's order, then padding."""
    protocol_id = header.protocol_id
    if protocol_id not in ACCEPTED_PROTOCOL_IDS:
        raise ProtocolError(f"ttheader: unsupported ProtocolID[{protocol_id}]")
    out = bytearray((protocol_id, 0))
    str_info = header.str_info
    count = len(str_info)
    if GDPR_TOKEN_KEY in str_info:
        count -= 1
        out.append(InfoID.ACL_TOKEN)
        _encode_str(out, str_info[GDPR_TOKEN_KEY], "acl token")
    if count > 0:
        if count > _MAX_COUNT:
            raise ProtocolError(f"ttheader: {count} string keys do not fit a u16 count")
        out.append(InfoID.KEY_VALUE)
        out += _pack_u16(count)
        for key, value in str_info.items():
            if key != GDPR_TOKEN_KEY:
                _encode_str(out, key, "key")
                _encode_str(out, value, "value")
    int_info = header.int_info
    if int_info:
        if len(int_info) > _MAX_COUNT:
            raise ProtocolError(f"ttheader: {len(int_info)} int keys do not fit a u16 count")
        out.append(InfoID.INT_KEY_VALUE)
        out += _pack_u16(len(int_info))
        for int_key, value in int_info.items():
            if not 0 <= int_key <= 0xFFFF:
                raise ProtocolError(f"ttheader: int key {int_key} is not a u16")
            out += _pack_u16(int_key)
            _encode_str(out, value, f"value of int key {int_key}")
    out += _PADDING[len(out) % 4]
    if len(out) > MAX_HEADER_SIZE:
        raise ProtocolError(f"ttheader: invalid header length[{len(out)}]")
    return out


def encode_frame_header(
    header: TTHeader, payload_size: int, *, max_frame_size: int = MAX_FRAME_SIZE
) -> bytes:
    """The bytes of a frame up to its payload; write ``payload_size`` payload bytes right after them.

    Raises :class:`ProtocolError` for a value the wire cannot carry: FLAGS not a u16, a seq id outside
    i32, an unsupported protocol id, a string over 65535 bytes, more than 65535 keys in a block, a
    header-info area over ``4*65535`` bytes, or a LENGTH over ``max_frame_size``.
    """
    if not 0 <= header.flags <= 0xFFFF:
        raise ProtocolError(f"ttheader: flags {header.flags:#x} are not a u16")
    if not _I32_MIN <= header.seq_id <= _I32_MAX:
        raise ProtocolError(f"ttheader: seq id {header.seq_id} is not an i32")
    info = _encode_info(header)
    length = 10 + len(info) + payload_size
    if length > max_frame_size:
        raise ProtocolError(f"ttheader: frame length {length} exceeds the limit {max_frame_size}")
    return _pack_prefix(length, MAGIC, header.flags, header.seq_id, len(info) >> 2) + info


def encode_frame(header: TTHeader, payload: BytesLike, *, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """One complete frame: :func:`encode_frame_header` followed by ``payload``."""
    return encode_frame_header(header, len(payload), max_frame_size=max_frame_size) + payload


# --------------------------------------------------------------------------------------------- decode


def _invalid_magic(buf: BytesLike, pos: int) -> ProtocolError:
    first, second = _unpack_u32_from(buf, pos)[0], _unpack_u32_from(buf, pos + 4)[0]
    return ProtocolError(f"not TTHeader protocol (first4Bytes={first:#x}, second4Bytes={second:#x})")


def _check_header_size(length: int, info_size: int) -> None:
    # Kitex rejects size*4 < 2 and size*4 > MaxHeaderSize; the area must also end inside the frame.
    if info_size < 2 or info_size > MAX_HEADER_SIZE:
        raise ProtocolError(f"ttheader: invalid header length[{info_size}]")
    if PREFIX_SIZE - 4 + info_size > length:
        raise ProtocolError(f"ttheader: header length[{info_size}] runs past the frame length {length}")


def _read_str(info: bytes, idx: int, what: str) -> tuple[str, int]:
    if idx + 2 > len(info):
        raise ProtocolError(f"ttheader: truncated {what} length")
    stop = idx + 2 + _unpack_u16_from(info, idx)[0]
    if stop > len(info):
        raise ProtocolError(f"ttheader: truncated {what}")
    return info[idx + 2 : stop].decode("utf-8", "surrogateescape"), stop


def _read_count(info: bytes, idx: int, what: str) -> int:
    if idx + 2 > len(info):
        raise ProtocolError(f"ttheader: truncated {what} count")
    count: int = _unpack_u16_from(info, idx)[0]
    return count


# Plain ints for the hot loop: an enum member lookup costs more than the comparison.
_PAD, _KV, _INT_KV, _ACL = (
    int(InfoID.PADDING),
    int(InfoID.KEY_VALUE),
    int(InfoID.INT_KEY_VALUE),
    int(InfoID.ACL_TOKEN),
)


class HeaderInfo:
    """The parsed header-info area of a frame (protocol id .. padding), shared by identical frames.

    Kitex clients send the same header bytes on every call of a method, so the decoder keeps the
    parsed form of recent areas keyed by their raw bytes (:func:`decode_header_info`) and hands out
    the same object again: ``str_info`` and ``int_info`` are read-only views, never copy-on-write
    dicts, and the object may serve as a cache key of its own (identity hash).
    """

    __slots__ = ("int_info", "protocol_id", "raw", "str_info")

    def __init__(
        self, raw: bytes, protocol_id: int, str_info: dict[str, str], int_info: dict[int, str]
    ) -> None:
        self.raw = raw
        self.protocol_id = protocol_id
        self.str_info: Mapping[str, str] = MappingProxyType(str_info)
        self.int_info: Mapping[int, str] = MappingProxyType(int_info)

    def header(self, flags: int, seq_id: int) -> TTHeader:
        return TTHeader(
            flags=flags,
            seq_id=seq_id,
            protocol_id=self.protocol_id,
            str_info=self.str_info,
            int_info=self.int_info,
        )


# What TTHeaderFrameDecoder.receive_spans calls per frame: (flags, seq_id, info, buf, start, end).
SpanBuilder: TypeAlias = Callable[[int, int, HeaderInfo, bytes, int, int], _T]


_INFO_CACHE: dict[bytes, HeaderInfo] = {}
INFO_CACHE_SIZE = 512  # distinct header-info areas remembered (then the cache starts afresh)
INFO_CACHE_MAX_BYTES = 1024  # larger areas are parsed every time, never kept


def decode_header_info(info: bytes) -> HeaderInfo:
    """Parse one header-info area (``HEADER_SIZE * 4`` bytes), through the cache of recent areas."""
    cached = _INFO_CACHE.get(info)
    if cached is not None:
        return cached
    parsed = _parse_info(info)
    if len(info) <= INFO_CACHE_MAX_BYTES:
        if len(_INFO_CACHE) >= INFO_CACHE_SIZE:
            _INFO_CACHE.clear()
        _INFO_CACHE[info] = parsed
    return parsed


def _parse_info(info: bytes) -> HeaderInfo:
    """Decode a header-info area (its size already checked against the frame); no cache."""
    size = len(info)
    protocol_id = info[0]
    if protocol_id not in ACCEPTED_PROTOCOL_IDS:
        raise ProtocolError(f"ttheader: unsupported ProtocolID[{protocol_id}]")
    # Transform ids are read and ignored, as Kitex does: no transform is ever applied.
    idx = 2 + info[1]
    if idx > size:
        raise ProtocolError(f"ttheader: need read {info[1]} transformIDs, but not enough")
    str_info: dict[str, str] = {}
    int_info: dict[int, str] = {}
    while idx < size:
        info_id = info[idx]
        idx += 1
        if info_id == _PAD:
            continue
        if info_id == _KV:
            count = _read_count(info, idx, "str kv info")
            idx += 2
            for _ in range(count):
                key, idx = _read_str(info, idx, "str kv info key")
                str_info[key], idx = _read_str(info, idx, "str kv info value")
        elif info_id == _INT_KV:
            count = _read_count(info, idx, "int kv info")
            idx += 2
            for _ in range(count):
                if idx + 4 > size:
                    raise ProtocolError("ttheader: truncated int kv info")
                int_key, length = _unpack_u16u16_from(info, idx)
                idx += 4
                stop = idx + length
                if stop > size:
                    raise ProtocolError("ttheader: truncated int kv info value")
                int_info[int_key] = info[idx:stop].decode("utf-8", "surrogateescape")
                idx = stop
        elif info_id == _ACL:
            str_info[GDPR_TOKEN_KEY], idx = _read_str(info, idx, "acl token")
        else:
            raise ProtocolError(f"ttheader: invalid infoIDType[{info_id:#x}]")
    return HeaderInfo(info, protocol_id, str_info, int_info)


def _parse(mv: memoryview, pos: int) -> tuple[TTHeader, int]:
    """Decode the frame at ``mv[pos:]`` (prefix already checked); return its header and payload offset."""
    _, _, flags, seq_id, words = _unpack_prefix_from(mv, pos)
    info_start = pos + PREFIX_SIZE
    info_end = info_start + words * 4
    return decode_header_info(bytes(mv[info_start:info_end])).header(flags, seq_id), info_end


def decode_frame(buf: BytesLike) -> tuple[TTHeader, bytes]:
    """Decode exactly one complete frame; its LENGTH must account for every byte of ``buf``."""
    with memoryview(buf) as mv:
        size = len(mv)
        if size < PREFIX_SIZE:
            raise ProtocolError(f"ttheader: {size} bytes are too short for a frame")
        length, magic, _, _, words = _unpack_prefix_from(mv, 0)
        if magic != MAGIC:
            raise _invalid_magic(mv, 0)
        if length > MAX_FRAME_SIZE:
            raise ProtocolError(f"ttheader: frame length {length} exceeds the limit {MAX_FRAME_SIZE}")
        if length + 4 != size:
            raise ProtocolError(f"ttheader: frame length {length} does not match the {size - 4} bytes given")
        _check_header_size(length, words * 4)
        header, offset = _parse(mv, 0)
        return header, bytes(mv[offset:])


class TTHeaderFrameDecoder(StreamDecoder):
    """Turns chunks of a TCP byte stream into complete :class:`Frame` values.

    ``max_frame_size`` bounds the LENGTH field (bytes after it). Any malformed input raises
    :class:`ProtocolError`; the decoder is then unusable and every later call raises again, because the
    stream can no longer be re-synchronised (the connection must be closed). Frames completed earlier in
    the failing call are carried by the error (a ``FramesBeforeError``). Payloads are copied out as
    ``bytes``, so the caller may keep them.
    """

    __slots__ = ()

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not PREFIX_SIZE <= max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be within [{PREFIX_SIZE}, {MAX_FRAME_SIZE}]")
        super().__init__(max_frame_size, "ttheader", PREFIX_SIZE)

    def receive_data(self, data: BytesLike) -> list[Frame]:
        """Feed bytes; return the frames they complete, in order."""
        return [
            Frame(header=info.header(flags, seq_id), payload=payload)
            for flags, seq_id, info, payload in self.receive_parts(data)
        ]

    def receive_parts(self, data: BytesLike) -> list[tuple[int, int, HeaderInfo, bytes]]:
        """:meth:`receive_data` without building objects: ``(flags, seq_id, info, payload)`` per frame."""
        return self.receive_spans(data, _payload_part)

    def receive_spans(self, data: BytesLike, build: SpanBuilder[_T]) -> list[_T]:
        """Feed bytes; return ``build(flags, seq_id, info, buf, start, end)`` for each frame completed.

        ``buf[start:end]`` is the frame's payload, parsed in place by ``build``. A
        :class:`ProtocolError` from ``build`` fails the decoder as its own errors do.
        """
        return self._receive(data, build)

    def _split(self, buf: bytes, frames: list[Any], build: Any) -> int:
        pos = 0
        size = len(buf)
        max_frame_size = self._max_frame_size
        while size - pos >= 4:
            # Each check runs as soon as its bytes are present, before the body is waited for.
            length = u32_at(buf, pos)
            if length > max_frame_size:
                raise ProtocolError(f"ttheader: frame length {length} exceeds the limit {max_frame_size}")
            if size - pos < 8:
                break
            if (buf[pos + 4] << 8) | buf[pos + 5] != MAGIC:
                raise _invalid_magic(buf, pos)
            if size - pos < PREFIX_SIZE:
                break
            words = (buf[pos + 12] << 8) | buf[pos + 13]
            _check_header_size(length, words * 4)
            end = pos + 4 + length
            if end > size:
                break
            flags = (buf[pos + 6] << 8) | buf[pos + 7]
            info_end = pos + PREFIX_SIZE + words * 4
            info = decode_header_info(buf[pos + PREFIX_SIZE : info_end])
            frames.append(build(flags, i32_at(buf, pos + 8), info, buf, info_end, end))
            pos = end
        return pos


def _payload_part(
    flags: int, seq_id: int, info: HeaderInfo, buf: bytes, start: int, end: int
) -> tuple[int, int, HeaderInfo, bytes]:
    return flags, seq_id, info, buf[start:end]
