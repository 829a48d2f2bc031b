"""The Kitex Protobuf payload and its ErrorProto (KITEX-WIRE.md §2, ``pkg/remote/codec/protobuf``)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.kitex_protobuf import (
    PROTOBUF_V1_MAGIC,
    KitexProtobufMessage,
    decode_error_proto,
    decode_message,
    encode_error_proto,
    encode_message,
    encode_message_prefix,
)
from kitex_grpc.protocol.thrift_message import FramedDecoder

H = bytes.fromhex
BODY = H("0a02") + b"hi"  # EchoRequest{message: "hi"}
GOLDEN = H("00000014 90010001 00000004") + b"Echo" + H("00000001") + BODY


def _error_proto_class() -> Any:
    """ErrorProto built from a descriptor at run time, to check the hand-written codec against protobuf."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="kitex_error_test.proto", package="protobuf", syntax="proto3"
    )
    msg = fdp.message_type.add(name="ErrorProto")
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    msg.field.add(
        name="TypeID", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32, label=optional
    )
    msg.field.add(
        name="Message", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=optional
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("protobuf.ErrorProto"))


ErrorProto = _error_proto_class()


def test_golden_message() -> None:
    assert encode_message("Echo", 1, 1, BODY) == GOLDEN
    assert decode_message(GOLDEN) == KitexProtobufMessage("Echo", 1, 1, BODY)
    assert encode_message_prefix("Echo", 1, 1, len(BODY)) + BODY == GOLDEN


def test_length_excludes_itself_and_unframed_decode() -> None:
    # The length is what follows it, so a FramedDecoder (u32 prefix, not counted) splits it correctly.
    assert FramedDecoder().receive_data(GOLDEN + GOLDEN) == [GOLDEN[4:], GOLDEN[4:]]
    assert decode_message(GOLDEN[4:], framed=False) == ("Echo", 1, 1, BODY)


def test_seq_id_is_a_signed_i32_and_type_is_16_bits() -> None:
    data = H("0000000e 9001fffe 00000001") + b"m" + H("ffffffff") + b"x"
    assert decode_message(data) == ("m", 0xFFFE, -1, b"x")
    assert encode_message("m", 0xFFFE, -1, b"x") == data


def test_exception_reply_with_error_proto() -> None:
    body = encode_error_proto(1, "unknown method Foo")
    data = encode_message("Foo", 3, 5, memoryview(body))
    decoded = decode_message(bytearray(data))
    assert decoded.msg_type == 3
    assert decode_error_proto(decoded.body) == (1, "unknown method Foo")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (H("000000"), "truncated"),
        (H("00000004 90010001"), "truncated"),
        (GOLDEN[:-1], "does not match"),
        (GOLDEN + b"x", "does not match"),
        (H("0000000e 80010001 00000001") + b"m" + H("00000001 00"), "bad version"),
        (H("0000000c 90010001 00000000 00000001"), "invalid string length"),
        (H("0000000c 90010001 00000005 00000001"), "truncated"),
    ],
)
def test_decode_errors(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_message(data)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 1, 1), "empty method name"),
        (("m", 0, 1), "invalid message type 0"),
        (("m", 0x10000, 1), "invalid message type"),
        (("m", 1, 1 << 31), "not an i32"),
        (("\ud800", 1, 1), "not encodable"),
    ],
)
def test_encode_errors(args: tuple[str, int, int], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        encode_message_prefix(*args, 0)


def test_encode_length_overflow() -> None:
    with pytest.raises(ProtocolError, match="does not fit a u32"):
        encode_message_prefix("m", 1, 1, 0xFFFFFFFF)


@given(
    name=st.text(min_size=1, max_size=20),
    msg_type=st.integers(1, 0xFFFF),
    seq_id=st.integers(-(1 << 31), (1 << 31) - 1),
    body=st.binary(max_size=40),
)
def test_message_round_trip(name: str, msg_type: int, seq_id: int, body: bytes) -> None:
    data = encode_message(name, msg_type, seq_id, body)
    assert decode_message(data) == (name, msg_type, seq_id, body)
    assert int.from_bytes(data[4:8], "big") & 0xFFFF0000 == PROTOBUF_V1_MAGIC


@given(data=st.binary(max_size=40), framed=st.booleans())
def test_decode_any_bytes(data: bytes, framed: bool) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(data, framed=framed)


# ------------------------------------------------------------------------------------------ ErrorProto


def test_golden_error_proto() -> None:
    assert encode_error_proto(6, "boom") == H("0806 1204") + b"boom"
    assert encode_error_proto(0, "") == b""
    assert encode_error_proto(-1, "") == H("08 ffffffffffffffffff01")
    assert decode_error_proto(b"") == (0, "")


@given(type_id=st.integers(-(1 << 31), (1 << 31) - 1), message=st.text(max_size=300))
def test_error_proto_matches_protobuf(type_id: int, message: str) -> None:
    ours = encode_error_proto(type_id, message)
    assert ours == ErrorProto(TypeID=type_id, Message=message).SerializeToString(deterministic=True)
    assert decode_error_proto(ours) == (type_id, message)
    parsed = ErrorProto.FromString(ours)
    assert (parsed.TypeID, parsed.Message) == (type_id, message)


def test_error_proto_unknown_fields_and_last_wins() -> None:
    data = (
        H("0801")
        + H("1801")  # field 3 varint
        + H("2502000000")  # field 4 fixed32
        + H("290300000000000000")  # field 5 fixed64
        + H("3202abcd")  # field 6 bytes
        + H("1201")
        + b"a"
        + H("10 07")  # field 2 with the wrong wire type: skipped
        + H("0a01")
        + b"z"  # field 1 with the wrong wire type: skipped
        + H("08ffffffff0f")  # varint 0xffffffff: int32(-1)
        + H("1201")
        + b"b"
    )
    assert decode_error_proto(data) == (-1, "b")
    parsed = ErrorProto.FromString(data)
    assert (parsed.TypeID, parsed.Message) == (-1, "b")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (H("08"), "bad varint"),
        (H("08") + H("ff") * 11, "bad varint"),
        (H("1205") + b"ab", "truncated"),
        (H("2502"), "truncated"),
        (H("1202 ff00"), "not valid UTF-8"),
        (H("0b 0c"), "unsupported wire type 3"),
        (H("0001"), "field number 0"),
    ],
)
def test_error_proto_errors(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_error_proto(data)


def test_error_proto_encode_errors() -> None:
    with pytest.raises(ProtocolError, match="not an int32"):
        encode_error_proto(1 << 31, "")
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        encode_error_proto(1, "\udcff")


@given(data=st.binary(max_size=40))
def test_error_proto_any_bytes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_error_proto(data)
