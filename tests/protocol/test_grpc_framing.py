from __future__ import annotations

import gzip
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.grpc_framing import (
    GrpcFramingError,
    MessageDecoder,
    RawMessage,
    compress,
    decompress,
    encode_message,
    gzip_compress,
    gzip_decompress,
)
from kitex_grpc.status import StatusCode


def test_encode_message_layout() -> None:
    assert encode_message(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_message(b"abc", True) == b"\x01\x00\x00\x00\x03abc"
    assert encode_message(b"") == b"\x00\x00\x00\x00\x00"


def test_decoder_whole_and_split_messages() -> None:
    dec = MessageDecoder()
    wire = encode_message(b"one") + encode_message(b"", True) + encode_message(b"three")
    assert dec.receive_data(wire) == [
        RawMessage(compressed=False, data=b"one"),
        RawMessage(compressed=True, data=b""),
        RawMessage(compressed=False, data=b"three"),
    ]
    # Byte by byte: nothing until each message completes.
    out: list[RawMessage] = []
    for i in range(len(wire)):
        out += dec.receive_data(wire[i : i + 1])
    assert [m.data for m in out] == [b"one", b"", b"three"]
    assert not dec.in_message and dec.buffered == 0


def test_decoder_reports_buffered_bytes() -> None:
    dec = MessageDecoder()
    wire = encode_message(b"hello")
    assert dec.receive_data(wire[:3]) == []
    assert dec.buffered == 3 and dec.in_message
    assert dec.receive_data(wire[3:7]) == []
    assert dec.buffered == 7
    assert dec.receive_data(wire[7:]) == [RawMessage(compressed=False, data=b"hello")]
    assert dec.buffered == 0


def test_decoder_accepts_memoryview_and_bytearray() -> None:
    dec = MessageDecoder()
    assert dec.receive_data(memoryview(encode_message(b"x"))) == [RawMessage(compressed=False, data=b"x")]
    assert dec.receive_data(bytearray(encode_message(b"y"))) == [RawMessage(compressed=False, data=b"y")]


def test_oversize_rejected_from_the_prefix_alone() -> None:
    dec = MessageDecoder(max_message_size=10)
    with pytest.raises(GrpcFramingError) as info:
        dec.receive_data(struct.pack(">BI", 0, 11))  # no body sent: rejected before buffering
    assert info.value.grpc_status is StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(info.value, ProtocolError)
    assert dec.buffered == 0
    with pytest.raises(GrpcFramingError):
        dec.receive_data(b"")  # poisoned


def test_exactly_max_size_is_accepted() -> None:
    dec = MessageDecoder(max_message_size=4)
    assert dec.receive_data(encode_message(b"1234")) == [RawMessage(compressed=False, data=b"1234")]


@pytest.mark.parametrize("flag", [2, 0x80, 0xFF])
def test_bad_flag_is_internal(flag: int) -> None:
    dec = MessageDecoder()
    with pytest.raises(GrpcFramingError) as info:
        dec.receive_data(bytes([flag]) + b"\x00\x00")
    assert info.value.grpc_status is StatusCode.INTERNAL
    # Split prefix: detected from the first byte.
    dec = MessageDecoder()
    with pytest.raises(GrpcFramingError):
        dec.receive_data(bytes([flag]))


def test_negative_max_size_refused() -> None:
    with pytest.raises(ValueError):
        MessageDecoder(-1)


def test_gzip_round_trip_and_interop_with_stdlib() -> None:
    body = b"kitex " * 1000
    packed = gzip_compress(body)
    assert len(packed) < len(body)
    assert gzip.decompress(packed) == body
    assert gzip_decompress(gzip.compress(body), len(body)) == body
    assert compress("gzip", body) == packed
    assert compress("identity", body) is body
    assert decompress("gzip", packed, len(body)) == body


def test_gzip_bomb_is_stopped_at_the_limit() -> None:
    bomb = gzip_compress(b"\x00" * 10_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(GrpcFramingError) as info:
        gzip_decompress(bomb, 1_000_000)
    assert info.value.grpc_status is StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    "data",
    [b"not gzip", gzip_compress(b"abc")[:-3], gzip_compress(b"abc") + b"junk"],
    ids=["garbage", "truncated", "trailing"],
)
def test_gzip_malformed_is_internal(data: bytes) -> None:
    with pytest.raises(GrpcFramingError) as info:
        gzip_decompress(data, 100)
    assert info.value.grpc_status is StatusCode.INTERNAL


def test_decompress_rules() -> None:
    for encoding in (None, "identity"):
        with pytest.raises(GrpcFramingError) as info:
            decompress(encoding, b"x", 10)
        assert info.value.grpc_status is StatusCode.INTERNAL
    with pytest.raises(GrpcFramingError) as info:
        decompress("snappy", b"x", 10)
    assert info.value.grpc_status is StatusCode.UNIMPLEMENTED
    with pytest.raises(GrpcFramingError):
        compress("snappy", b"x")


messages = st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(messages, st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20))
def test_round_trip_with_arbitrary_chunking(msgs: list[tuple[bool, bytes]], cuts: list[int]) -> None:
    wire = b"".join(encode_message(body, flag) for flag, body in msgs)
    dec = MessageDecoder(max_message_size=300)
    out: list[RawMessage] = []
    pos = 0
    i = 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        out += dec.receive_data(wire[pos : pos + step])
        pos += step
        i += 1
    assert out == [RawMessage(compressed=flag, data=body) for flag, body in msgs]
    assert dec.buffered == 0


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=50))
def test_arbitrary_bytes_decode_or_raise_typed(data: bytes, chunk: int) -> None:
    dec = MessageDecoder(max_message_size=64)
    try:
        for pos in range(0, len(data), chunk):
            for msg in dec.receive_data(data[pos : pos + chunk]):
                assert len(msg.data) <= 64
            assert dec.buffered <= 64 + 5
    except GrpcFramingError as exc:
        assert exc.grpc_status in (StatusCode.INTERNAL, StatusCode.RESOURCE_EXHAUSTED)


def test_deflate_is_zlib_and_bounded() -> None:
    """grpc-core's "deflate" is a zlib stream (RFC 1950); inflating it stops at the size limit."""
    body = b"kitex " * 1000
    packed = compress("deflate", body)
    assert zlib.decompress(packed) == body
    assert decompress("deflate", packed, len(body)) == body
    with pytest.raises(GrpcFramingError) as info:
        decompress("deflate", packed, len(body) - 1)
    assert info.value.grpc_status is StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(GrpcFramingError) as info:
        decompress("deflate", packed[:-3], len(body))
    assert info.value.grpc_status is StatusCode.INTERNAL
