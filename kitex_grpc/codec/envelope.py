"""Message envelopes: the method name, message type and seq id around a payload body, per codec.

Two codecs travel over TTHeader and Framed (KITEX-WIRE.md §2):

* Thrift, strict binary: ``u32 (0x80010000|type) | i32 nameLen | name | i32 seqid | struct``;
  exceptions carry a TApplicationException struct.
* Kitex Protobuf: ``u32 len | u32 (0x90010000|type) | u32 nameLen | name | u32 seqid | protobuf``;
  it is always framed (its own ``len`` is the frame length) and exceptions carry ``ErrorProto``.

Both are exposed through one small interface, :class:`Envelope`, so the transport never branches on
the codec. ``encode`` returns the bytes of one message *including* the frame length a framed
transport needs (``framed=True``), and ``decode`` takes one message without that length.
"""

from __future__ import annotations

import struct
from typing import Protocol

from kitex_grpc.protocol import kitex_protobuf as kpb
from kitex_grpc.protocol import thrift_message as tm

__all__ = ["KITEX_PROTOBUF", "THRIFT", "Envelope", "KitexProtobufEnvelope", "ThriftEnvelope"]

_U32 = struct.Struct(">I")


class Envelope(Protocol):
    """Encodes and decodes one message of a payload codec."""

    name: str

    def encode(self, method: str, msg_type: int, seq_id: int, body: bytes, framed: bool) -> bytes:
        """One message; with ``framed`` it starts with its u32 length."""
        ...

    def decode(self, data: bytes) -> tuple[str, int, int, bytes]:
        """``(method, msg_type, seq_id, body)`` of one message given without a frame length."""
        ...

    def encode_exception(self, message: str, type_id: int) -> bytes:
        """The body of an EXCEPTION message."""
        ...

    def decode_exception(self, body: bytes) -> tuple[str, int]:
        """``(message, type_id)`` from the body of an EXCEPTION message."""
        ...


class ThriftEnvelope:
    """Strict binary Thrift messages (``pkg/remote/codec/thrift/thrift.go``)."""

    name = "thrift"

    def encode(self, method: str, msg_type: int, seq_id: int, body: bytes, framed: bool) -> bytes:
        head = tm.encode_message_begin(method, msg_type, seq_id)
        if framed:
            return _U32.pack(len(head) + len(body)) + head + body
        return head + body

    def decode(self, data: bytes) -> tuple[str, int, int, bytes]:
        method, msg_type, seq_id, offset = tm.decode_message_begin(data)
        return method, msg_type, seq_id, data[offset:]

    def encode_exception(self, message: str, type_id: int) -> bytes:
        return tm.encode_application_exception(message, type_id)

    def decode_exception(self, body: bytes) -> tuple[str, int]:
        return tm.decode_application_exception(body)


class KitexProtobufEnvelope:
    """Kitex Protobuf messages (``pkg/remote/codec/protobuf/protobuf.go``); always framed."""

    name = "kitex_protobuf"

    def encode(self, method: str, msg_type: int, seq_id: int, body: bytes, framed: bool) -> bytes:
        return kpb.encode_message_prefix(method, msg_type, seq_id, len(body)) + body

    def decode(self, data: bytes) -> tuple[str, int, int, bytes]:
        msg = kpb.decode_message(data, framed=False)
        return msg.name, msg.msg_type, msg.seq_id, msg.body

    def encode_exception(self, message: str, type_id: int) -> bytes:
        return kpb.encode_error_proto(type_id, _valid_utf8(message))

    def decode_exception(self, body: bytes) -> tuple[str, int]:
        type_id, message = kpb.decode_error_proto(body)
        return message, type_id


def _valid_utf8(text: str) -> str:
    """``text`` with what UTF-8 cannot carry replaced by U+FFFD: ErrorProto.Message is a proto3 string,
    valid UTF-8 by definition, and an error text may quote peer bytes read with surrogateescape (a
    method name), whose invalid bytes would otherwise make the exception reply itself fail."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")  # the peer's bytes, as they came
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "replace")  # a lone surrogate no peer byte made: "?"
        return raw.decode("utf-8", "replace")


THRIFT: Envelope = ThriftEnvelope()
KITEX_PROTOBUF: Envelope = KitexProtobufEnvelope()
