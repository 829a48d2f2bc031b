"""Whole messages on a TCP byte stream, sans-IO: framing + envelope, both directions.

A message is a Thrift or Kitex Protobuf envelope (:mod:`kitex_grpc.codec.envelope`) in one of four
framings (KITEX-WIRE.md §1.6 and §2):

=================  =====================================================================
``TTHEADER``       TTHeader, then the strict-binary Thrift message (no length)
``TTHEADER_FRAMED`` TTHeader, then ``u32 len`` and the message (Kitex Protobuf: always this)
``FRAMED``         ``u32 len`` and the message, no header
``BUFFERED``       the Thrift message alone (Kitex "PurePayload"); the server accepts it
=================  =====================================================================

:class:`MessageDecoder` splits a stream into :class:`Message` values; :func:`encode` builds one.
Everything here raises :class:`~kitex_grpc.errors.ProtocolError` on bad input.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from kitex_grpc.codec.envelope import KITEX_PROTOBUF, THRIFT, Envelope
from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol import thrift_message as tm
from kitex_grpc.protocol.detection import PayloadKind, detect_payload
from kitex_grpc.protocol.frames import FramesBeforeError, i32_at
from kitex_grpc.protocol.ttheader import (
    MAGIC,
    MAX_FRAME_SIZE,
    MAX_HEADER_SIZE,
    PREFIX_SIZE,
    TTHEADER_MAGIC,
    BytesLike,
    HeaderInfo,
    TTHeader,
    TTHeaderFrameDecoder,
    encode_frame_header,
)

__all__ = [
    "Framing",
    "Message",
    "MessageDecoder",
    "MessageEncoder",
    "encode",
    "encode_with_info",
    "frame_limit",
    "header_info",
]

_U32: Final = struct.Struct(">I")
_pack_prefix: Final = struct.Struct(">IHHiH").pack  # LENGTH, MAGIC, FLAGS, SEQ, HEADER_SIZE
_MAGIC_NO_FLAGS: Final = TTHEADER_MAGIC.to_bytes(4, "big")  # MAGIC, then FLAGS 0
_MASK: Final = 0xFFFF0000
_THRIFT_V1: Final = 0x80010000
_PROTOBUF_V1: Final = 0x90010000


def frame_limit(max_message_size: int) -> int:
    """The largest frame accepted: a message of the configured size plus a full header and envelope."""
    return min(MAX_FRAME_SIZE, max_message_size + MAX_HEADER_SIZE + 0x10000)


class Framing(enum.Enum):
    """How a message is delimited on the stream."""

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is Python code

    TTHEADER = "ttheader"
    TTHEADER_FRAMED = "ttheader_framed"
    FRAMED = "framed"
    BUFFERED = "buffered"

    # Plain attributes of each member, set below (an Enum property look-up costs ~0.3 µs).
    has_header: bool
    framed: bool


for _framing in Framing:
    _framing.has_header = _framing in (Framing.TTHEADER, Framing.TTHEADER_FRAMED)
    _framing.framed = _framing in (Framing.TTHEADER_FRAMED, Framing.FRAMED)
del _framing


_NO_INFO: Mapping[Any, str] = MappingProxyType({})


class Message:
    """One decoded message; ``header`` is the TTHeader it came in (``None`` for Framed/Buffered).

    The decoder keeps the header's parsed info area (``info``, shared by every frame with the same
    header bytes) and its FLAGS and SEQ fields; ``header`` builds the :class:`TTHeader` on demand.
    ``str_info`` / ``int_info`` are the header's keys, empty without a header.
    """

    __slots__ = ("body", "envelope", "flags", "frame_seq", "framing", "info", "method", "msg_type", "seq_id")

    def __init__(
        self,
        method: str,
        msg_type: int,
        seq_id: int,
        body: bytes,
        envelope: Envelope,
        framing: Framing,
        info: HeaderInfo | None = None,
        flags: int = 0,
        frame_seq: int = 0,
    ) -> None:
        self.method = method
        self.msg_type = msg_type
        self.seq_id = seq_id
        self.body = body
        self.envelope = envelope
        self.framing = framing
        self.info = info
        self.flags = flags
        self.frame_seq = frame_seq

    @property
    def header(self) -> TTHeader | None:
        info = self.info
        return None if info is None else info.header(self.flags, self.frame_seq)

    @property
    def str_info(self) -> Mapping[str, str]:
        info = self.info
        return _NO_INFO if info is None else info.str_info

    @property
    def int_info(self) -> Mapping[int, str]:
        info = self.info
        return _NO_INFO if info is None else info.int_info

    def __repr__(self) -> str:
        return (
            f"Message(method={self.method!r}, msg_type={self.msg_type}, seq_id={self.seq_id}, "
            f"framing={self.framing.value}, envelope={self.envelope.name}, body={len(self.body)}B, "
            f"header={self.header!r})"
        )


def encode(
    framing: Framing,
    envelope: Envelope,
    method: str,
    msg_type: int,
    seq_id: int,
    body: bytes,
    str_info: Mapping[str, str] | None = None,
    int_info: Mapping[int, str] | None = None,
) -> bytes:
    """The bytes of one message; the TTHeader (seq = payload seq, flags 0, protocol id 0) if framed so.

    Kitex writes protocol id 0 even before a Kitex Protobuf payload (``header_codec.go getProtocolID``).
    """
    payload = envelope.encode(method, msg_type, seq_id, body, framing.framed)
    if not framing.has_header:
        return payload
    header = TTHeader(seq_id=seq_id, str_info=str_info or {}, int_info=int_info or {})
    return encode_frame_header(header, len(payload)) + payload


def header_info(str_info: Mapping[str, str], int_info: Mapping[int, str]) -> bytes:
    """The encoded header-info area (protocol id .. padding) for these keys, to reuse across frames."""
    return encode_frame_header(TTHeader(str_info=str_info, int_info=int_info), 0)[PREFIX_SIZE:]


def encode_with_info(
    framing: Framing, envelope: Envelope, method: str, msg_type: int, seq_id: int, body: bytes, info: bytes
) -> bytes:
    """:func:`encode` with a header-info area made once by :func:`header_info` (the hot path)."""
    payload = envelope.encode(method, msg_type, seq_id, body, framing.framed)
    length = PREFIX_SIZE - 4 + len(info) + len(payload)
    if length > MAX_FRAME_SIZE:
        raise ProtocolError(f"ttheader: frame length {length} exceeds the limit {MAX_FRAME_SIZE}")
    return _pack_prefix(length, MAGIC, 0, seq_id, len(info) >> 2) + info + payload


class MessageEncoder:
    """:func:`encode_with_info` for one (framing, envelope, method, message type, header info), fast.

    Everything but the seq id and the body is encoded once; :meth:`encode` packs the two length
    fields and the seq id and joins the pieces with one copy of the body. Thrift only: for a Kitex
    Protobuf envelope it defers to :func:`encode_with_info`. ``info`` is ignored without a header.
    """

    __slots__ = ("_envelope", "_framing", "_head", "_header_size", "_info", "_method", "_msg_type", "_thrift")

    def __init__(self, framing: Framing, envelope: Envelope, method: str, msg_type: int, info: bytes) -> None:
        self._framing = framing
        self._envelope = envelope
        self._method = method
        self._msg_type = msg_type
        self._info = info if framing.has_header else b""
        self._header_size = (len(info) >> 2).to_bytes(2, "big")  # the prefix's HEADER_SIZE, in words
        self._thrift = envelope is THRIFT
        # The strict message header up to its seq id (validated by encode_message_begin).
        self._head = tm.encode_message_begin(method, msg_type, 0)[:-4] if self._thrift else b""

    def encode(self, seq_id: int, body: bytes) -> bytes:
        if not self._thrift:
            framing = self._framing
            if not framing.has_header:
                return encode(framing, self._envelope, self._method, self._msg_type, seq_id, body)
            return encode_with_info(
                framing, self._envelope, self._method, self._msg_type, seq_id, body, self._info
            )
        # int.to_bytes rather than struct: compiled, it is a native call, not a method lookup.
        head = self._head
        framing = self._framing
        seq = seq_id.to_bytes(4, "big", signed=True)  # the TTHeader's SEQ and the message's seq id
        if framing is Framing.TTHEADER:
            info = self._info
            length = PREFIX_SIZE - 4 + len(info) + len(head) + 4 + len(body)
            if length > MAX_FRAME_SIZE:
                raise ProtocolError(f"ttheader: frame length {length} exceeds the limit {MAX_FRAME_SIZE}")
            return b"".join(
                (length.to_bytes(4, "big"), _MAGIC_NO_FLAGS, seq, self._header_size, info, head, seq, body)
            )
        message_size = len(head) + 4 + len(body)
        if framing is Framing.FRAMED:
            return b"".join((message_size.to_bytes(4, "big"), head, seq, body))
        if framing is Framing.BUFFERED:
            return b"".join((head, seq, body))
        info = self._info
        length = PREFIX_SIZE + len(info) + message_size
        if length > MAX_FRAME_SIZE:
            raise ProtocolError(f"ttheader: frame length {length} exceeds the limit {MAX_FRAME_SIZE}")
        return b"".join(
            (
                length.to_bytes(4, "big"),
                _MAGIC_NO_FLAGS,
                seq,
                self._header_size,
                info,
                message_size.to_bytes(4, "big"),
                head,
                seq,
                body,
            )
        )


def _unframe(payload: bytes, what: str) -> bytes:
    if len(payload) < 4:
        raise ProtocolError(f"{what}: frame truncated")
    length = _U32.unpack_from(payload, 0)[0]
    if length != len(payload) - 4:
        raise ProtocolError(
            f"{what}: frame length {length} does not match the {len(payload) - 4} bytes given"
        )
    return payload[4:]


def decode_ttheader_payload(header: TTHeader, payload: bytes) -> Message:
    """The message inside a TTHeader frame, its kind sniffed from the first 8 bytes (``checkPayload``)."""
    info = HeaderInfo(b"", header.protocol_id, dict(header.str_info), dict(header.int_info))
    return _ttheader_message(header.flags, header.seq_id, info, payload)


def _strict_thrift(
    buf: bytes,
    start: int,
    end: int,
    framing: Framing,
    info: HeaderInfo | None = None,
    flags: int = 0,
    frame_seq: int = 0,
) -> Message | None:
    """The usual case parsed in place: a strict Thrift message in ``buf[start:end]`` with a name.

    Only the name and the body are copied. ``None`` for anything else (other payloads, an empty
    name, a short header): the general decoder then takes the message and reports what is wrong.
    """
    if end - start < 12 or buf[start] != 0x80 or buf[start + 1] != 0x01:
        return None
    name_len = i32_at(buf, start + 4)
    body_start = start + 12 + name_len
    if name_len <= 0 or body_start > end:
        return None
    name = buf[start + 8 : body_start - 4].decode("utf-8", "surrogateescape")
    seq_id = i32_at(buf, body_start - 4)
    # the message type is the low byte of the version word
    return Message(name, buf[start + 3], seq_id, buf[body_start:end], THRIFT, framing, info, flags, frame_seq)


def _framed_span(buf: bytes, start: int, end: int) -> Message:
    """The message of the Framed frame ``buf[start:end]`` (a tm.FramedDecoder span builder)."""
    message = _strict_thrift(buf, start, end, Framing.FRAMED)
    return message if message is not None else decode_framed(buf[start:end])


def _ttheader_span(flags: int, frame_seq: int, info: HeaderInfo, buf: bytes, start: int, end: int) -> Message:
    """The message in the TTHeader payload ``buf[start:end]`` (a receive_spans builder)."""
    message = _strict_thrift(buf, start, end, Framing.TTHEADER, info, flags, frame_seq)
    return message if message is not None else _ttheader_general(flags, frame_seq, info, buf[start:end])


def _ttheader_message(flags: int, frame_seq: int, info: HeaderInfo, payload: bytes) -> Message:
    message = _strict_thrift(payload, 0, len(payload), Framing.TTHEADER, info, flags, frame_seq)
    return message if message is not None else _ttheader_general(flags, frame_seq, info, payload)


def _ttheader_general(flags: int, frame_seq: int, info: HeaderInfo, payload: bytes) -> Message:
    """The payload kind sniffed from its first 8 bytes (Kitex ``checkPayload``), then decoded."""
    kind = detect_payload(payload[:8])
    if kind is PayloadKind.THRIFT:
        method, msg_type, seq_id, body = THRIFT.decode(payload)
        return Message(method, msg_type, seq_id, body, THRIFT, Framing.TTHEADER, info, flags, frame_seq)
    inner = _unframe(payload, "ttheader payload")
    envelope = THRIFT if kind is PayloadKind.THRIFT_FRAMED else KITEX_PROTOBUF
    method, msg_type, seq_id, body = envelope.decode(inner)
    return Message(method, msg_type, seq_id, body, envelope, Framing.TTHEADER_FRAMED, info, flags, frame_seq)


def decode_framed(frame: bytes) -> Message:
    """The message of one Framed frame (given without its length): Thrift or Kitex Protobuf."""
    if len(frame) < 4:
        raise ProtocolError(f"framed: {len(frame)}-byte frame is too short for a message")
    head = _U32.unpack_from(frame, 0)[0] & _MASK
    if head == _THRIFT_V1:
        envelope = THRIFT
    elif head == _PROTOBUF_V1:
        envelope = KITEX_PROTOBUF
    else:
        raise ProtocolError(f"invalid payload (first4Bytes={head:#x}) in a framed message")
    method, msg_type, seq_id, body = envelope.decode(frame)
    return Message(method, msg_type, seq_id, body, envelope, Framing.FRAMED)


class _BufferedSplitter:
    """Strict-binary Thrift messages with no length: the end is found by walking the struct."""

    __slots__ = ("_buffer", "_limit")

    def __init__(self, limit: int) -> None:
        self._buffer = bytearray()
        self._limit = limit

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: BytesLike) -> list[bytes]:
        buf = self._buffer
        buf += data
        out: list[bytes] = []
        while buf:
            try:
                _, _, _, offset = tm.decode_message_begin(buf)
                end = tm.skip_value(buf, offset, tm.TType.STRUCT)
            except ProtocolError as exc:
                incomplete = "truncated" in exc.detail or "too short" in exc.detail
                if not incomplete:
                    if out:  # the messages before the bad bytes are still served
                        raise FramesBeforeError(exc, out) from exc
                    raise
                if len(buf) > self._limit:
                    raise ProtocolError(
                        f"buffered: message exceeds the limit {self._limit} bytes before it ends"
                    ) from None
                break
            out.append(bytes(buf[:end]))
            del buf[:end]
        return out


class MessageDecoder:
    """Splits one connection's bytes into :class:`Message` values, in the connection's framing.

    ``framing`` is what detection (server) or the configured transport (client) says; the TTHeader
    variants accept both payload kinds, as Kitex checks every payload. ``max_frame_size`` bounds each
    frame (and a Buffered message). After a :class:`ProtocolError` the stream is lost.
    """

    __slots__ = ("_buffered", "_framed", "_ttheader", "framing")

    def __init__(self, framing: Framing, max_frame_size: int) -> None:
        self.framing = framing
        self._ttheader: TTHeaderFrameDecoder | None = None
        self._framed: tm.FramedDecoder | None = None
        self._buffered: _BufferedSplitter | None = None
        if framing.has_header:
            self._ttheader = TTHeaderFrameDecoder(max_frame_size)
        elif framing is Framing.FRAMED:
            self._framed = tm.FramedDecoder(max_frame_size)
        else:
            self._buffered = _BufferedSplitter(max_frame_size)

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished message (non-zero at EOF means a truncated message)."""
        part = self._ttheader or self._framed or self._buffered
        assert part is not None
        return part.buffered

    def receive_data(self, data: BytesLike) -> list[Message]:
        if self._ttheader is not None:
            return self._ttheader.receive_spans(data, _ttheader_span)
        if self._framed is not None:
            return self._framed.receive_spans(data, _framed_span)
        assert self._buffered is not None
        error: ProtocolError | None = None
        try:
            raws: list[bytes] = self._buffered.receive_data(data)
        except FramesBeforeError as exc:
            raws, error = exc.frames, exc
        out: list[Message] = []
        for raw in raws:
            try:
                method, msg_type, seq_id, body = THRIFT.decode(raw)
            except ProtocolError as bad:  # not `exc`: compiled, a name keeps the type of its first binding
                error = bad
                break
            out.append(Message(method, msg_type, seq_id, body, THRIFT, Framing.BUFFERED))
        if error is not None:
            raise FramesBeforeError(error, out) if out else error
        return out
