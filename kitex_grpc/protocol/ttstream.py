"""TTHeader Streaming ("ttstream") frames, sans-IO (KITEX-WIRE-2.md §11).

Every frame is one TTHeader packet (:mod:`kitex_grpc.protocol.ttheader`) with FLAGS = Streaming
(``0x0002``), the stream id in SEQUENCE NUMBER, protocol id ``0x10`` (ThriftStruct) and the int keys
27 FrameType (ASCII digit) and 9 ToMethod on every frame (Kitex ``pkg/remote/trans/ttstream/frame.go
EncodeFrame``, ``gopkg:protocol/ttheader/encode.go``). Data payloads are bare Thrift Binary structs;
Trailer and Rst payloads are empty or one Thrift EXCEPTION message (§11.8, §11.9).

:class:`StreamFrameDecoder` turns bytes into :class:`StreamFrame` values and raises
:class:`~kitex_grpc.errors.ProtocolError` for anything that must close the connection: a frame
without the streaming flag ("unexpected header flags") or with a FrameType outside 1..5 ("unexpected
frame type"), as Kitex's read loop does (§11.1, §11.2).
"""

from __future__ import annotations

import enum
import itertools
import struct
from collections.abc import Mapping
from typing import Final

from kitex_grpc.errors import ProtocolError
from kitex_grpc.header_keys import CANCEL_PATH_KEY, IDL_SERVICE_KEY
from kitex_grpc.protocol.frames import BytesLike
from kitex_grpc.protocol.thrift_message import (
    MessageType,
    decode_application_exception,
    decode_message_begin,
    encode_application_exception,
    encode_message_begin,
)
from kitex_grpc.protocol.ttheader import (
    MAGIC,
    MAX_FRAME_SIZE,
    HeaderFlags,
    HeaderInfo,
    IntKey,
    ProtocolID,
    TTHeader,
    TTHeaderFrameDecoder,
    encode_frame,
)

__all__ = [
    "CANCEL_PATH_KEY",
    "IDL_SERVICE_KEY",
    "FrameType",
    "StreamFrame",
    "StreamFrameDecoder",
    "decode_exception_payload",
    "encode_exception_payload",
    "encode_stream_frame",
    "encode_with_info",
    "frame_info",
    "next_stream_id",
]

_FRAME_TYPE: Final = int(IntKey.FRAME_TYPE)  # 27
_TO_METHOD: Final = int(IntKey.TO_METHOD)  # 9
_STREAMING: Final = int(HeaderFlags.STREAMING)
_I32_MIN: Final = -(1 << 31)
_I32_MAX: Final = (1 << 31) - 1


class FrameType(enum.IntEnum):
    """Int key 27 (gopkg ``protocol/ttheader/encode.go``)."""

    META = 1
    HEADER = 2
    DATA = 3
    TRAILER = 4
    RST = 5


_BY_DIGIT: Final = {str(int(t)): t for t in FrameType}
_DIGIT: Final = {t: str(int(t)) for t in FrameType}


class StreamFrame:
    """One decoded ttstream frame."""

    __slots__ = ("int_info", "method", "payload", "sid", "str_info", "type")

    def __init__(
        self,
        type: FrameType,
        sid: int,
        method: str,
        str_info: Mapping[str, str],
        int_info: Mapping[int, str],
        payload: bytes,
    ) -> None:
        self.type = type
        self.sid = sid
        self.method = method
        self.str_info = str_info
        self.int_info = int_info
        self.payload = payload

    def __repr__(self) -> str:
        return f"StreamFrame({self.type.name}, sid={self.sid}, method={self.method!r}, {len(self.payload)}B)"


def encode_stream_frame(
    type: FrameType,
    sid: int,
    method: str,
    payload: BytesLike = b"",
    str_info: Mapping[str, str] | None = None,
    int_info: Mapping[int, str] | None = None,
    *,
    max_frame_size: int = MAX_FRAME_SIZE,
) -> bytes:
    """One complete frame. ``int_info`` adds keys after 27 and 9 (which it may not override)."""
    ints: dict[int, str] = {_FRAME_TYPE: _DIGIT[type], _TO_METHOD: method}
    if int_info:
        for key, value in int_info.items():
            ints.setdefault(key, value)
    header = TTHeader(
        flags=_STREAMING,
        seq_id=sid,
        protocol_id=ProtocolID.THRIFT_STRUCT,
        str_info=str_info or {},
        int_info=ints,
    )
    return encode_frame(header, payload, max_frame_size=max_frame_size)


# The header-info area of frames without str keys (every Data frame, plain Headers and Trailers): the
# same bytes for every frame of a method and type, so a stream encodes it once.
_INFO_CACHE: dict[tuple[FrameType, str], bytes] = {}
_INFO_CACHE_SIZE: Final = 1024
_PREFIX = struct.Struct(">IHHiH")  # LENGTH, MAGIC, FLAGS, SEQ (stream id), HEADER_SIZE
_PREFIX_SIZE: Final = 14


def frame_info(type: FrameType, method: str) -> bytes:
    """The header-info area (protocol id .. padding) of a ``type`` frame of ``method`` with no str keys."""
    key = (type, method)
    info = _INFO_CACHE.get(key)
    if info is None:
        info = encode_stream_frame(type, 1, method)[_PREFIX_SIZE:]
        if len(_INFO_CACHE) >= _INFO_CACHE_SIZE:
            _INFO_CACHE.clear()
        _INFO_CACHE[key] = info
    return info


def encode_with_info(sid: int, info: bytes, payload: bytes, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """A frame from a :func:`frame_info` area: the same bytes as :func:`encode_stream_frame` makes."""
    length = 10 + len(info) + len(payload)
    if length > max_frame_size:
        raise ProtocolError(f"ttheader: frame length {length} exceeds the limit {max_frame_size}")
    if not _I32_MIN <= sid <= _I32_MAX:
        raise ProtocolError(f"ttheader: seq id {sid} is not an i32")
    return _PREFIX.pack(length, MAGIC, _STREAMING, sid, len(info) >> 2) + info + payload


def _build(flags: int, seq_id: int, info: HeaderInfo, buf: bytes, start: int, end: int) -> StreamFrame:
    # Runs inside the TTHeader decoder: a ProtocolError here fails the decoder (the connection ends).
    if not flags & _STREAMING:
        raise ProtocolError(f"ttstream: unexpected header flags {flags:#x} (streaming flag missing)")
    ints = info.int_info
    frame_type = _BY_DIGIT.get(ints.get(_FRAME_TYPE, ""))
    if frame_type is None:
        raise ProtocolError(f"ttstream: unexpected frame type {ints.get(_FRAME_TYPE)!r}")
    return StreamFrame(frame_type, seq_id, ints.get(_TO_METHOD, ""), info.str_info, ints, buf[start:end])


class StreamFrameDecoder:
    """Bytes of one ttstream connection in, :class:`StreamFrame` values out.

    After a :class:`ProtocolError` the connection must be closed; a :class:`FramesBeforeError`
    carries the good frames that came before the bad bytes.
    """

    __slots__ = ("_inner",)

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._inner = TTHeaderFrameDecoder(max_frame_size)

    @property
    def buffered(self) -> int:
        return self._inner.buffered

    def receive_data(self, data: BytesLike) -> list[StreamFrame]:
        return self._inner.receive_spans(data, _build)


def encode_exception_payload(method: str, sid: int, message: str, type_id: int) -> bytes:
    """A Trailer/Rst payload: ``MarshalFastMsg(method, EXCEPTION, seqid=sid, TApplicationException)``."""
    return encode_message_begin(method, int(MessageType.EXCEPTION), sid) + encode_application_exception(
        message, type_id
    )


def decode_exception_payload(payload: BytesLike) -> tuple[str, int]:
    """``(message, type)`` of a Trailer/Rst payload; :class:`ProtocolError` unless an EXCEPTION message
    (Kitex's ``errIllegalFrame``, 12004)."""
    _name, msg_type, _seq, offset = decode_message_begin(payload)
    if msg_type != MessageType.EXCEPTION:
        raise ProtocolError(f"ttstream: trailer payload is a message of type {msg_type}, not EXCEPTION")
    return decode_application_exception(payload, offset)


# One process-wide counter for every connection, pre-incremented (the first id is 1); 0 is skipped
# ("reserved for connection-level control frames"), and ids wrap into negative i32 values, which are
# legal (transport_client.go genStreamID).
_counter = itertools.count(1)


def next_stream_id() -> int:
    """The next client stream id."""
    while True:
        sid = next(_counter) & 0xFFFFFFFF
        if sid > _I32_MAX:
            sid -= 1 << 32
        if sid != 0:
            return sid
