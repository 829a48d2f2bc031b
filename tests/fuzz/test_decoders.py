"""Arbitrary bytes never make a sans-IO decoder raise anything but its module's documented error.

The decoders with such a property elsewhere (tests/protocol/: detect, the gRPC MessageDecoder, the
TTHeader and Framed stream decoders, Kitex Protobuf and Thrift message heads, application exceptions;
tests/ttheader/test_thrift_bounds.py: the struct walks) are not repeated here.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from kitex_grpc.codec.envelope import KITEX_PROTOBUF, THRIFT
from kitex_grpc.codec.thrift import deserializer
from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol import grpc_headers as gh
from kitex_grpc.protocol.detection import detect_payload
from kitex_grpc.protocol.grpc_compression import parse_accept_encoding, parse_encoding
from kitex_grpc.protocol.grpc_framing import GrpcFramingError, decompress
from kitex_grpc.protocol.h2_hpack import CachingDecoder
from kitex_grpc.protocol.thrift_message import skip_value
from kitex_grpc.protocol.ttheader import decode_frame, decode_header_info, rpc_timeout_seconds
from tests.ttheader.support import Req

SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None)
# The errors h2_call's header-block handling turns into a connection PROTOCOL_ERROR (RFC 9113 §4.3);
# anything else from the HPACK decoder would escape it.
HPACK_ERRORS = (hpack.HPACKError, IndexError, TypeError, UnicodeDecodeError)


@SETTINGS
@given(st.binary(max_size=16))
def test_grpc_header_values_parse_or_raise_grpc_header_error(value: bytes) -> None:
    with contextlib.suppress(gh.GrpcHeaderError):
        assert gh.decode_timeout(value) >= 0
    with contextlib.suppress(gh.GrpcHeaderError):
        assert 0 <= gh.parse_grpc_status(value) < 10**10
    with contextlib.suppress(gh.GrpcHeaderError):
        gh.decode_binary_value(value)
    assert isinstance(gh.decode_grpc_message(value), str)
    assert gh.parse_content_type(value) is None or isinstance(gh.parse_content_type(value), str)
    assert parse_encoding(value) is None or isinstance(parse_encoding(value), str)
    assert all(isinstance(name, str) for name in parse_accept_encoding(value))


@SETTINGS
@given(st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=12)), max_size=6))
def test_received_metadata_decodes_or_raises_grpc_header_error(headers: list[tuple[bytes, bytes]]) -> None:
    with contextlib.suppress(gh.GrpcHeaderError):
        gh.decode_metadata(headers)


VALID_GZIP = gzip.compress(b"kitex " * 40)
VALID_DEFLATE = zlib.compress(b"kitex " * 40)


@SETTINGS
@given(
    st.sampled_from(["gzip", "deflate", "identity", "snappy", None]),
    st.one_of(st.binary(max_size=64), st.sampled_from([VALID_GZIP, VALID_DEFLATE])),
    st.integers(0, 512),
    st.integers(0, 8),
)
def test_decompress_any_bytes_inflates_within_the_limit_or_raises_framing_error(
    encoding: str | None, data: bytes, max_size: int, cut: int
) -> None:
    try:
        out = decompress(encoding, data[: len(data) - cut], max_size)
    except GrpcFramingError:
        return
    assert len(out) <= max_size


@SETTINGS
@given(st.binary(max_size=64), st.integers(0, 70), st.integers(0, 20))
def test_skip_value_any_bytes_stays_inside_or_raises_protocol_error(
    data: bytes, offset: int, ttype: int
) -> None:
    try:
        end = skip_value(data, offset, ttype)
    except ProtocolError:
        return
    assert offset <= end <= len(data)


@SETTINGS
@given(st.binary(max_size=64))
def test_ttheader_frame_and_info_decode_or_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        _header, payload = decode_frame(data)
        assert len(payload) <= len(data)
    # Callers pass a whole area of HEADER_SIZE * 4 bytes, HEADER_SIZE >= 1 (checked against the frame).
    area = data[: len(data) // 4 * 4] or b"\x00" * 4
    with contextlib.suppress(ProtocolError):
        decode_header_info(area)
    with contextlib.suppress(ProtocolError):
        detect_payload(data)


@SETTINGS
@given(st.one_of(st.text(max_size=40), st.text("+-0123456789", min_size=300, max_size=400)))
def test_rpc_timeout_text_never_raises(value: str) -> None:
    # issue 23 #9: 310 or more digits once raised OverflowError from float division
    timeout = rpc_timeout_seconds(value)
    assert timeout is None or timeout > 0


@SETTINGS
@given(st.binary(max_size=48))
def test_envelopes_decode_or_raise_protocol_error(data: bytes) -> None:
    for envelope in (THRIFT, KITEX_PROTOBUF):
        with contextlib.suppress(ProtocolError):
            envelope.decode(data)
        with contextlib.suppress(ProtocolError):
            envelope.decode_exception(data)


READ_REQ = deserializer(Req)


@SETTINGS
@given(st.binary(max_size=48))
def test_thrift_struct_deserializer_reads_or_raises_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        READ_REQ(data)


@SETTINGS
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
def test_hpack_blocks_decode_or_raise_what_h2_call_catches(blocks: list[bytes]) -> None:
    decoder = CachingDecoder(max_header_list_size=4096)
    for block in blocks:  # one decoder across blocks: the dynamic table carries over, as on a connection
        try:
            headers, size = decoder.decode_sized(block)
        except HPACK_ERRORS:
            return
        assert size == sum(len(n) + len(v) + 32 for n, v in headers)
