"""Strict binary Thrift message headers, TApplicationException bodies, Framed framing (KITEX-WIRE.md §2)."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from thriftpy2.protocol.binary import TBinaryProtocol
from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TMemoryBuffer

from kitex_grpc.errors import ProtocolError, TApplicationType
from kitex_grpc.protocol.thrift_message import (
    FramedDecoder,
    MessageType,
    TType,
    decode_application_exception,
    decode_message_begin,
    encode_application_exception,
    encode_framed,
    encode_message_begin,
    skip_value,
)

H = bytes.fromhex
# The message header of the KITEX-WIRE.md §1.2 payload.
GOLDEN_BEGIN = H("80010001 00000004") + b"echo" + H("00000001")
GOLDEN_ARGS = H("0c0001 0b0001 00000002") + b"hi" + H("00 00")


def thriftpy2_bytes(name: str, msg_type: int, seq_id: int, exc: TApplicationException | None = None) -> bytes:
    buf = TMemoryBuffer()  # type: ignore[no-untyped-call]
    proto = TBinaryProtocol(buf)  # type: ignore[no-untyped-call]
    proto.write_message_begin(name, msg_type, seq_id)  # type: ignore[no-untyped-call]
    if exc is not None:
        proto.write_struct(exc)  # type: ignore[no-untyped-call]
    return bytes(buf.getvalue())  # type: ignore[no-untyped-call]


# ------------------------------------------------------------------------------------------ header


def test_golden_message_begin() -> None:
    assert encode_message_begin("echo", MessageType.CALL, 1) == GOLDEN_BEGIN
    assert decode_message_begin(GOLDEN_BEGIN + GOLDEN_ARGS) == ("echo", MessageType.CALL, 1, 16)
    assert thriftpy2_bytes("echo", 1, 1) == GOLDEN_BEGIN


def test_decode_at_offset_and_from_views() -> None:
    data = b"xyz" + GOLDEN_BEGIN
    assert decode_message_begin(data, 3) == ("echo", 1, 1, 19)
    assert decode_message_begin(memoryview(bytearray(data)), 3) == ("echo", 1, 1, 19)


@pytest.mark.parametrize("msg_type", list(MessageType))
def test_message_types_and_seq(msg_type: MessageType) -> None:
    data = encode_message_begin("Method", msg_type, -5)
    assert data == thriftpy2_bytes("Method", msg_type, -5)
    assert decode_message_begin(data) == ("Method", msg_type, -5, len(data))


def test_type_is_the_low_byte() -> None:
    assert decode_message_begin(H("8001ff06 00000001") + b"m" + H("00000009"))[1] == 6


def test_undecodable_name_round_trips() -> None:
    data = H("80010001 00000002 ff41 00000001")
    name, _, _, _ = decode_message_begin(data)
    assert name == "\udcffA"
    assert encode_message_begin(name, 1, 1) == data


def test_empty_name_allowed_only_on_exception() -> None:
    assert decode_message_begin(H("80010003 00000000 00000000")) == ("", MessageType.EXCEPTION, 0, 12)
    with pytest.raises(ProtocolError, match="empty method name"):
        decode_message_begin(H("80010002 00000000 00000001"))
    with pytest.raises(ProtocolError, match="empty method name"):
        encode_message_begin("", MessageType.EXCEPTION, 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (H("00000004") + b"echo" + H("01 00000001"), "bad version"),  # non-strict (old) binary
        (H("80020001 00000004") + b"echo" + H("00000001"), "bad version"),  # wrong version
        (H("82210104") + b"echo", "bad version"),  # compact protocol
        (H("80010001 000000"), "truncated"),
        (H("80010001 00000004") + b"ech", "truncated"),
        (H("80010001 00000004") + b"echo" + H("000000"), "truncated"),
        (H("80010001 ffffffff 00000000"), "truncated"),
    ],
)
def test_decode_errors(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_message_begin(data)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("m", 0, 1), "invalid message type 0"),
        (("m", 256, 1), "invalid message type 256"),
        (("m", 1, 1 << 31), "seq id"),
        (("\ud800", 1, 1), "not encodable"),
    ],
)
def test_encode_errors(args: tuple[str, int, int], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        encode_message_begin(*args)


@given(
    name=st.text(min_size=1, max_size=20),
    msg_type=st.sampled_from(list(MessageType)),
    seq_id=st.integers(-(1 << 31), (1 << 31) - 1),
)
def test_message_begin_round_trip(name: str, msg_type: MessageType, seq_id: int) -> None:
    data = encode_message_begin(name, msg_type, seq_id)
    assert data == thriftpy2_bytes(name, msg_type, seq_id)
    assert decode_message_begin(data) == (name, msg_type, seq_id, len(data))


@given(data=st.binary(max_size=40), offset=st.integers(0, 8))
def test_decode_any_bytes(data: bytes, offset: int) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message_begin(data, offset)


# ------------------------------------------------------------------------------- application exception


def test_golden_application_exception() -> None:
    body = encode_application_exception("boom", TApplicationType.INTERNAL_ERROR)
    assert body == H("0b0001 00000004") + b"boom" + H("080002 00000006 00")
    assert thriftpy2_bytes("m", 3, 1, TApplicationException(6, "boom"))[13:] == body
    assert decode_application_exception(body) == ("boom", 6)


def test_application_exception_from_thriftpy2_after_header() -> None:
    data = thriftpy2_bytes("Echo", 3, 9, TApplicationException(20, "unknown service , method Echo"))
    name, msg_type, seq_id, offset = decode_message_begin(data)
    assert (name, msg_type, seq_id) == ("Echo", MessageType.EXCEPTION, 9)
    assert decode_application_exception(data, offset) == ("unknown service , method Echo", 20)


def test_application_exception_defaults_and_unknown_fields() -> None:
    assert decode_application_exception(b"\x00") == ("", 0)
    fields = (
        H("080001 00000005")  # field 1 with the wrong type: skipped
        + H("020003 01")  # bool
        + H("030004 7f")  # byte
        + H("040005 0000000000000000")  # double
        + H("060006 0001")  # i16
        + H("0a0007 0000000000000001")  # i64
        + H("0f0008 08 00000002 00000001 00000002")  # list<i32>
        + H("0e0009 0b 00000002 00000001 61 00000000")  # set<string>
        + H("0d000a 0b0c 00000001 00000001 6b 080001 00000001 00")  # map<string, struct>
        + H("0c000b 0c0001 00 00")  # nested structs
        + H("0b0001 00000002")
        + b"hi"
        + H("080002 00000004")
        + H("0f000c 0c 00000000")  # empty list<struct>
        + H("00")
    )
    assert decode_application_exception(fields) == ("hi", 4)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "truncated"),
        (H("0b00"), "truncated"),
        (H("0b0001 000000"), "buffer too short"),
        (H("0b0001 00000005 6869"), "buffer too short"),
        (H("0b0001 ffffffff"), "negative size"),
        (H("080002 0000"), "buffer too short"),
        (H("0b0001 00000000"), "truncated"),  # no STOP
        (H("100001 00"), "unknown data type 16"),
        (H("0f0001 08 ffffffff"), "negative size"),
        (H("0f0001 08 00000002 0000"), "buffer too short"),
        (H("0f0001 0b 00000002 00000000"), "buffer too short"),
        (H("0f0001 0b"), "buffer too short"),
        (H("0d0001 0b0b"), "buffer too short"),
        (H("0d0001 0808 00000001 00000001 0000"), "buffer too short"),
        (H("0c0001 0b00"), "buffer too short"),
        (H("0c0001"), "buffer too short"),
        (H("0f0001 00 00000001 00"), "unknown data type 0"),
    ],
)
def test_application_exception_errors(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_application_exception(body)


def test_skip_depth_limit() -> None:
    nested = H("0c0001") * 70 + H("00") * 71
    with pytest.raises(ProtocolError, match="depth limit"):
        decode_application_exception(nested)
    assert skip_value(H("0c0001") * 10 + H("00") * 11, 0, TType.STRUCT) == 41


def test_skip_value_each_type() -> None:
    assert skip_value(H("01"), 0, TType.BOOL) == 1
    assert skip_value(H("00000000 0000000000"), 1, TType.DOUBLE) == 9
    assert skip_value(H("00000001 61"), 0, TType.STRING) == 5
    assert skip_value(H("0808 00000002") + b"\0" * 16, 0, TType.MAP) == 22
    assert skip_value(H("06 00000003") + b"\0" * 6, 0, TType.SET) == 11
    with pytest.raises(ProtocolError, match="buffer too short"):
        skip_value(H("0000"), 0, TType.I32)
    with pytest.raises(ProtocolError, match="buffer too short"):
        skip_value(H("0808"), 0, TType.MAP)


def test_encode_application_exception_errors() -> None:
    with pytest.raises(ProtocolError, match="exception type"):
        encode_application_exception("x", 1 << 31)


@given(message=st.text(max_size=30), type_id=st.integers(-(1 << 31), (1 << 31) - 1))
def test_application_exception_round_trip(message: str, type_id: int) -> None:
    body = encode_application_exception(message, type_id)
    assert decode_application_exception(body) == (message, type_id)


@given(data=st.binary(max_size=60))
def test_application_exception_any_bytes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_application_exception(data)


# ------------------------------------------------------------------------------------------- framed


def test_encode_framed() -> None:
    assert encode_framed(GOLDEN_BEGIN + GOLDEN_ARGS) == H("0000001e") + GOLDEN_BEGIN + GOLDEN_ARGS
    with pytest.raises(ProtocolError, match="exceeds the limit 3"):
        encode_framed(b"abcd", max_frame_size=3)


def test_framed_decoder() -> None:
    message = GOLDEN_BEGIN + GOLDEN_ARGS
    stream = encode_framed(message) + encode_framed(b"") + encode_framed(b"xyz")
    decoder = FramedDecoder()
    assert decoder.receive_data(stream[:3]) == []
    assert decoder.buffered == 3
    assert decoder.receive_data(stream[3:40]) == [message, b""]
    assert decoder.buffered == 2
    assert decoder.receive_data(memoryview(stream)[40:]) == [b"xyz"]
    assert decoder.buffered == 0


def test_framed_decoder_limit_checked_first() -> None:
    decoder = FramedDecoder(max_frame_size=16)
    assert decoder.receive_data(H("00000010")) == []
    with pytest.raises(ProtocolError, match="exceeds the limit 16"):
        decoder.receive_data(b"\0" * 16 + H("00000011"))
    assert decoder.buffered == 0
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.receive_data(b"")
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        FramedDecoder().receive_data(H("40000000"))


def test_framed_decoder_validation() -> None:
    with pytest.raises(ValueError, match="u32"):
        FramedDecoder(max_frame_size=-1)


@given(
    frames=st.lists(st.binary(max_size=30), max_size=5),
    cuts=st.lists(st.integers(0, 500), max_size=8),
)
def test_framed_round_trip(frames: list[bytes], cuts: list[int]) -> None:
    data = b"".join(encode_framed(f) for f in frames)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    decoder = FramedDecoder()
    out: list[bytes] = []
    for a, b in itertools.pairwise(points):
        out += decoder.receive_data(data[a:b])
    assert out == frames
    assert decoder.buffered == 0


@given(data=st.binary(max_size=100), cut=st.integers(0, 100))
def test_framed_any_bytes(data: bytes, cut: int) -> None:
    decoder = FramedDecoder(max_frame_size=64)
    with contextlib.suppress(ProtocolError):
        decoder.receive_data(data[:cut])
        decoder.receive_data(data[cut:])
