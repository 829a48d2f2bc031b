"""Per-connection protocol sniffing (KITEX-WIRE.md §1.6)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.detection import (
    HTTP2_PREFACE_PREFIX,
    DetectedProtocol,
    PayloadKind,
    detect,
    detect_payload,
)
from kitex_grpc.protocol.kitex_protobuf import encode_message
from kitex_grpc.protocol.thrift_message import MessageType, encode_framed, encode_message_begin
from kitex_grpc.protocol.ttheader import HeaderFlags, TTHeader, decode_frame, encode_frame

H = bytes.fromhex
THRIFT = encode_message_begin("echo", MessageType.CALL, 1) + H("00")
PROTOBUF = encode_message("Echo", 1, 1, b"")


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", DetectedProtocol.HTTP2),
        (HTTP2_PREFACE_PREFIX, DetectedProtocol.HTTP2),
        (encode_frame(TTHeader(), THRIFT), DetectedProtocol.TTHEADER),
        (encode_frame(TTHeader(flags=HeaderFlags.SUPPORT_OUT_OF_ORDER), THRIFT), DetectedProtocol.TTHEADER),
        (encode_frame(TTHeader(flags=HeaderFlags.STREAMING), b""), DetectedProtocol.TTHEADER_STREAMING),
        (encode_frame(TTHeader(flags=0xFFFF), b""), DetectedProtocol.TTHEADER_STREAMING),
        (H("ffaf0004 0000 0000"), DetectedProtocol.MESH_HEADER),
        (THRIFT, DetectedProtocol.BUFFERED),
        (encode_framed(THRIFT), DetectedProtocol.FRAMED),
        (PROTOBUF, DetectedProtocol.KITEX_PROTOBUF),
    ],
)
def test_detect(first: bytes, expected: DetectedProtocol) -> None:
    assert detect(first) is expected
    assert detect(first[:8]) is expected
    assert detect(memoryview(bytearray(first))) is expected


@pytest.mark.parametrize("size", range(8))
def test_needs_eight_bytes(size: int) -> None:
    assert detect(b"PRI * HTTP/2.0"[:size]) is None
    assert detect(b"\xff" * size) is None


@pytest.mark.parametrize(
    ("first", "detail"),
    [
        (b"\0" * 8, "invalid payload (first4Bytes=0x0, second4Bytes=0x0)"),
        (H("00000004") + b"echo", "invalid payload (first4Bytes=0x4, second4Bytes=0x6563686f)"),  # non-strict
        (
            H("82210104 6563686f"),
            "invalid payload (first4Bytes=0x82210104, second4Bytes=0x6563686f)",
        ),  # compact
        (
            H("00000020 0fff0000"),
            "invalid payload (first4Bytes=0x20, second4Bytes=0xfff0000)",
        ),  # Apache THeader
        (b"GET / HTTP/1.1", "invalid payload (first4Bytes=0x47455420, second4Bytes=0x2f204854)"),
        (b"PRI * HX", "invalid payload (first4Bytes=0x50524920, second4Bytes=0x2a204858)"),
    ],
)
def test_garbage(first: bytes, detail: str) -> None:
    with pytest.raises(ProtocolError) as info:
        detect(first)
    assert info.value.detail == detail
    assert str(info.value) == f"protocol error: {detail}"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (THRIFT, PayloadKind.THRIFT),
        (encode_framed(THRIFT), PayloadKind.THRIFT_FRAMED),
        (PROTOBUF, PayloadKind.KITEX_PROTOBUF),
    ],
)
def test_detect_payload(payload: bytes, expected: PayloadKind) -> None:
    _, body = decode_frame(encode_frame(TTHeader(), payload))
    assert detect_payload(body[:8]) is expected
    assert detect_payload(body) is expected


def test_detect_payload_errors() -> None:
    with pytest.raises(ProtocolError, match="too short"):
        detect_payload(THRIFT[:7])
    with pytest.raises(ProtocolError, match=r"invalid payload \(first4Bytes=0x10000000"):
        detect_payload(H("10000000 00000000"))  # a TTHeader inside a TTHeader is not a payload
    with pytest.raises(ProtocolError, match="invalid payload"):
        detect_payload(H("ffaf0000 00000000"))  # nor is a MeshHeader


@given(st.binary(max_size=12))
def test_detect_any_bytes(data: bytes) -> None:
    try:
        result = detect(data)
    except ProtocolError:
        assert len(data) >= 8
    else:
        assert (result is None) == (len(data) < 8)
    with contextlib.suppress(ProtocolError):
        detect_payload(data)
