"""Frame-level and property tests for the TTHeader codec (KITEX-WIRE.md §1)."""

from __future__ import annotations

import contextlib
import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.ttheader import (
    ACCEPTED_PROTOCOL_IDS,
    GDPR_TOKEN_KEY,
    MAX_FRAME_SIZE,
    MAX_HEADER_SIZE,
    Frame,
    HeaderFlags,
    IntKey,
    ProtocolID,
    TTHeader,
    TTHeaderFrameDecoder,
    decode_frame,
    encode_frame,
    encode_frame_header,
    is_ttheader,
)

H = bytes.fromhex

# KITEX-WIRE.md §1.2 worked example, transcribed token by token.
GOLDEN_PAYLOAD = H("80010001 00000004") + b"echo" + H("00000001 0c0001 0b0001 00000002") + b"hi" + H("00 00")
GOLDEN_FRAME = (
    H("00000050 10000000 00000001 000a")
    + H("0000 01 0001 0003")
    + b"isn"
    + H("0005")
    + b"Hello"
    + H("10 0002 0006 0005")
    + b"Hello"
    + H("0009 0004")
    + b"echo"
    + H("000000")
    + GOLDEN_PAYLOAD
)
GOLDEN_HEADER = TTHeader(
    seq_id=1,
    str_info={"isn": "Hello"},
    int_info={IntKey.TO_SERVICE: "Hello", IntKey.TO_METHOD: "echo"},
)


def frame(
    info: bytes, payload: bytes = b"", *, words: int | None = None, seq: int = 0, flags: int = 0
) -> bytes:
    """A hand-built frame whose header-info area is ``info`` (padding included by the caller)."""
    if words is None:
        words = len(info) // 4
    return struct.pack(">IHHiH", 10 + len(info) + len(payload), 0x1000, flags, seq, words) + info + payload


def decode_error(data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        decode_frame(data)
    return info.value.detail


# ------------------------------------------------------------------------------------------- golden


def test_golden_encode() -> None:
    assert encode_frame(GOLDEN_HEADER, GOLDEN_PAYLOAD) == GOLDEN_FRAME
    assert len(GOLDEN_FRAME) == 0x50 + 4


def test_golden_decode() -> None:
    header, payload = decode_frame(GOLDEN_FRAME)
    assert header == GOLDEN_HEADER
    assert payload == GOLDEN_PAYLOAD
    assert header.int_info[IntKey.TO_METHOD] == "echo"


def test_golden_streaming_byte_by_byte() -> None:
    decoder = TTHeaderFrameDecoder()
    frames: list[Frame] = []
    for i in range(len(GOLDEN_FRAME)):
        frames += decoder.receive_data(GOLDEN_FRAME[i : i + 1])
        assert decoder.buffered == (i + 1) % len(GOLDEN_FRAME)
    assert frames == [Frame(header=GOLDEN_HEADER, payload=GOLDEN_PAYLOAD)]


def test_empty_info_is_one_word_of_padding() -> None:
    assert encode_frame(TTHeader(), b"") == H("0000000e 1000 0000 00000000 0001 00 00 0000")
    assert decode_frame(H("0000000e 1000 0000 00000000 0001 00 00 0000")) == (TTHeader(), b"")


@pytest.mark.parametrize(
    ("value", "padding"),
    [("ab", 0), ("abc", 3), ("", 2), ("a", 1)],
)
def test_padding(value: str, padding: int) -> None:
    # 2 (protocol id, transforms) + 3 (block id, count) + 2+1 ("k") + 2+len(value)
    info_size = 10 + len(value)
    assert (info_size + padding) % 4 == 0
    data = encode_frame(TTHeader(str_info={"k": value}), b"P")
    expected_info = (
        H("0000 01 0001 0001") + b"k" + struct.pack(">H", len(value)) + value.encode() + b"\0" * padding
    )
    assert data == frame(expected_info, b"P")
    assert decode_frame(data) == (TTHeader(str_info={"k": value}), b"P")


def test_acl_token_goes_first_and_back_into_str_info() -> None:
    header = TTHeader(str_info={"a": "b", GDPR_TOKEN_KEY: "tok"})
    data = encode_frame(header, b"")
    info = H("0000 11 0003") + b"tok" + H("01 0001 0001") + b"a" + H("0001") + b"b" + H("000000")
    assert data == frame(info)
    decoded, _ = decode_frame(data)
    assert decoded.str_info == {GDPR_TOKEN_KEY: "tok", "a": "b"}
    assert encode_frame(decoded, b"") == data  # decode then encode is byte-exact


def test_acl_token_alone_has_no_key_value_block() -> None:
    data = encode_frame(TTHeader(str_info={GDPR_TOKEN_KEY: ""}), b"")
    assert data == frame(H("0000 11 0000 000000"))


def test_prefix_fields_and_flags() -> None:
    header = TTHeader(
        flags=HeaderFlags.STREAMING | HeaderFlags.SASL, seq_id=-2, protocol_id=ProtocolID.KITEX_PROTOBUF
    )
    data = encode_frame(header, b"xy")
    assert data[4:14] == H("1000 0012 fffffffe 0001")
    assert decode_frame(data) == (header, b"xy")
    assert encode_frame_header(header, 2) + b"xy" == data


@pytest.mark.parametrize("protocol_id", sorted(ACCEPTED_PROTOCOL_IDS))
def test_accepted_protocol_ids(protocol_id: int) -> None:
    data = encode_frame(TTHeader(protocol_id=protocol_id), b"")
    assert decode_frame(data)[0].protocol_id == protocol_id


def test_insertion_order_is_kept() -> None:
    one = encode_frame(TTHeader(str_info={"a": "1", "b": "2"}, int_info={9: "x", 3: "y"}), b"")
    two = encode_frame(TTHeader(str_info={"b": "2", "a": "1"}, int_info={3: "y", 9: "x"}), b"")
    assert one != two
    assert decode_frame(one)[0] == decode_frame(two)[0]


def test_padding_between_blocks_and_transform_ids_are_skipped() -> None:
    info = (
        H("00 02 aa bb 00 00 01 0001 0001")
        + b"k"
        + H("0001")
        + b"v"
        + H("00 10 0001 0016 0001")
        + b"1"
        + H("00000000")
    )
    assert len(info) % 4 == 0
    header, payload = decode_frame(frame(info, b"!"))
    assert header.str_info == {"k": "v"}
    assert header.int_info == {IntKey.MSG_TYPE: "1"}
    assert payload == b"!"


def test_empty_blocks_and_duplicates() -> None:
    info = (
        H("00 00 01 0000 10 0000 01 0002 0001")
        + b"k"
        + H("0001")
        + b"1"
        + H("0001")
        + b"k"
        + H("0001")
        + b"2"
    )
    info += b"\0" * (-len(info) % 4)
    header, _ = decode_frame(frame(info))
    assert header.str_info == {"k": "2"}  # the last value wins, as in a Go map
    assert header.int_info == {}


def test_undecodable_bytes_round_trip() -> None:
    info = H("00 00 01 0001 0001 ff 0002 c328")
    data = frame(info)
    header, _ = decode_frame(data)
    assert header.str_info == {"\udcff": "\udcc3("}
    assert encode_frame(header, b"") == data


def test_is_ttheader() -> None:
    assert is_ttheader(GOLDEN_FRAME[:8])
    assert is_ttheader(H("00000000 1000ffff"))
    assert not is_ttheader(H("00000000 0fff0000"))
    assert not is_ttheader(GOLDEN_FRAME[:7])


def test_int_keys() -> None:
    assert int(IntKey.MESH_VERSION) == 0
    assert int(IntKey.RPC_TIMEOUT) == 12
    assert int(IntKey.MSG_TYPE) == 22
    assert int(IntKey.FRAME_TYPE) == 27
    assert [int(k) for k in IntKey] == list(range(29))


# ---------------------------------------------------------------------------------------- decode errors


def test_bad_magic() -> None:
    data = bytearray(GOLDEN_FRAME)
    data[4:6] = b"\x0f\xff"
    assert decode_error(bytes(data)) == "not TTHeader protocol (first4Bytes=0x50, second4Bytes=0xfff0000)"
    with pytest.raises(ProtocolError, match="not TTHeader"):
        TTHeaderFrameDecoder().receive_data(bytes(data[:8]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (frame(b"", words=0), "invalid header length[0]"),
        (frame(H("0000 0000"), words=2), "runs past the frame length"),
        (frame(H("0200 0000")), "unsupported ProtocolID[2]"),
        (frame(H("0100 0000")), "unsupported ProtocolID[1]"),
        (frame(H("0003 0102")), "need read 3 transformIDs, but not enough"),
        (frame(H("0000 0200")), "invalid infoIDType[0x2]"),
        (frame(H("0000 1200")), "invalid infoIDType[0x12]"),
        (frame(H("0000 0001")), "truncated str kv info count"),
        (frame(H("0000 1001")), "truncated int kv info count"),
        (frame(H("0000 0000 01 0001 00")), "truncated str kv info key length"),
        (frame(H("0000 0000 01 0001 0005 616263")), "truncated str kv info key"),
        (frame(H("0000 00 01 0001 0001 61 0009 00")), "truncated str kv info value"),
        (frame(H("0000 10 0001 0001 00")), "truncated int kv info"),
        (frame(H("0000 10 0001 0001 0009 616263")), "truncated int kv info value"),
        (frame(H("0000 11 00")), "truncated acl token length"),
        (frame(H("0000 11 0004 616263")), "truncated acl token"),
        (H("0000000e 1000"), "too short"),
        (GOLDEN_FRAME + b"x", "does not match"),
        (GOLDEN_FRAME[:-1], "does not match"),
        (H("40000000 1000 0000 00000000 0001 0000 0000"), "exceeds the limit"),
    ],
)
def test_decode_errors(data: bytes, message: str) -> None:
    assert message in decode_error(data)
    if len(data) >= 14 and "does not match" not in message:
        with pytest.raises(ProtocolError, match=message.replace("[", r"\[")):
            TTHeaderFrameDecoder().receive_data(data)


def test_hostile_length_rejected_from_four_bytes() -> None:
    decoder = TTHeaderFrameDecoder()
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.receive_data(H("40000000"))
    small = TTHeaderFrameDecoder(max_frame_size=100)
    assert small.receive_data(H("00000064 1000")) == []
    with pytest.raises(ProtocolError, match="exceeds the limit 100"):
        TTHeaderFrameDecoder(max_frame_size=100).receive_data(H("00000065"))


def test_header_size_checked_before_body() -> None:
    decoder = TTHeaderFrameDecoder()
    with pytest.raises(ProtocolError, match="runs past"):
        decoder.receive_data(H("00001000 1000 0000 00000001 0fff"))


def test_decoder_stays_failed() -> None:
    decoder = TTHeaderFrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.receive_data(H("00000010 2000 0000"))
    assert decoder.buffered == 0
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.receive_data(GOLDEN_FRAME)


def test_decoder_many_frames_and_partial_tail() -> None:
    second = encode_frame(TTHeader(seq_id=2), b"two")
    decoder = TTHeaderFrameDecoder()
    frames = decoder.receive_data(GOLDEN_FRAME + second + second[:5])
    assert [f.header.seq_id for f in frames] == [1, 2]
    assert decoder.buffered == 5
    frames = decoder.receive_data(memoryview(second)[5:])
    assert frames == [Frame(header=TTHeader(seq_id=2), payload=b"two")]
    assert decoder.receive_data(GOLDEN_FRAME[:20]) == []
    assert decoder.buffered == 20
    assert decoder.receive_data(bytearray(GOLDEN_FRAME[20:]))[0].payload == GOLDEN_PAYLOAD
    assert decoder.buffered == 0


@pytest.mark.parametrize("bad", [0, 13, MAX_FRAME_SIZE + 1])
def test_decoder_limit_validation(bad: int) -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        TTHeaderFrameDecoder(max_frame_size=bad)


# ---------------------------------------------------------------------------------------- encode errors


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (TTHeader(flags=0x10000), "not a u16"),
        (TTHeader(flags=-1), "not a u16"),
        (TTHeader(seq_id=1 << 31), "not an i32"),
        (TTHeader(seq_id=-(1 << 31) - 1), "not an i32"),
        (TTHeader(protocol_id=ProtocolID.THRIFT_COMPACT), "unsupported ProtocolID[2]"),
        (TTHeader(protocol_id=0x100), "unsupported ProtocolID"),
        (TTHeader(str_info={"k" * 65536: ""}), "exceeded 65535B max size"),
        (TTHeader(str_info={"k": "v" * 65536}), "exceeded 65535B max size"),
        (TTHeader(str_info={GDPR_TOKEN_KEY: "t" * 65536}), "acl token exceeded"),
        (TTHeader(int_info={1: "v" * 65536}), "value of int key 1 exceeded"),
        (TTHeader(int_info={0x10000: ""}), "int key 65536 is not a u16"),
        (TTHeader(int_info={-1: ""}), "not a u16"),
        (TTHeader(str_info={"k": "\ud800"}), "not encodable"),
        (TTHeader(str_info={str(i): "" for i in range(0x10000)}), "65536 string keys"),
        (TTHeader(int_info=dict.fromkeys(range(0x10000), "")), "65536 int keys"),
        (TTHeader(str_info={f"{i}": "v" * 65535 for i in range(5)}), "invalid header length"),
    ],
)
def test_encode_errors(header: TTHeader, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        encode_frame(header, b"")
    assert message in info.value.detail


def test_encode_largest_header() -> None:
    # 2 (ids) + 3 (block head) + 4 * (2+1 + 2) + the values: exactly MAX_HEADER_SIZE, no padding; one byte
    # more needs padding to 4 * 65536 and is refused.
    values = {
        "a": "x" * 65535,
        "b": "x" * 65535,
        "c": "x" * 65535,
        "d": "x" * (MAX_HEADER_SIZE - 25 - 3 * 65535),
    }
    data = encode_frame(TTHeader(str_info=values), b"")
    assert struct.unpack_from(">H", data, 12)[0] == 0xFFFF
    assert decode_frame(data)[0].str_info == values
    values["d"] += "x"
    with pytest.raises(ProtocolError, match="invalid header length"):
        encode_frame(TTHeader(str_info=values), b"")


def test_encode_frame_limit() -> None:
    assert len(encode_frame(TTHeader(), b"x" * 86, max_frame_size=100)) == 104
    with pytest.raises(ProtocolError, match="exceeds the limit 100"):
        encode_frame(TTHeader(), b"x" * 87, max_frame_size=100)


# -------------------------------------------------------------------------------------------- properties

_text = st.text(max_size=12)
headers = st.builds(
    TTHeader,
    flags=st.integers(0, 0xFFFF),
    seq_id=st.integers(-(1 << 31), (1 << 31) - 1),
    protocol_id=st.sampled_from(sorted(ACCEPTED_PROTOCOL_IDS)),
    str_info=st.dictionaries(st.one_of(_text, st.just(GDPR_TOKEN_KEY)), _text, max_size=5),
    int_info=st.dictionaries(st.integers(0, 0xFFFF), _text, max_size=5),
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(header=headers, payload=st.binary(max_size=64))
def test_round_trip(header: TTHeader, payload: bytes) -> None:
    data = encode_frame(header, payload)
    assert struct.unpack_from(">H", data, 12)[0] * 4 + 14 + len(payload) == len(data)
    decoded, body = decode_frame(data)
    assert decoded == header
    assert body == payload
    assert encode_frame(decoded, body) == data


@given(
    items=st.lists(st.tuples(headers, st.binary(max_size=32)), max_size=4),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_stream_round_trip(items: list[tuple[TTHeader, bytes]], cuts: list[int]) -> None:
    data = b"".join(encode_frame(h, p) for h, p in items)
    decoder = TTHeaderFrameDecoder()
    frames: list[Frame] = []
    for chunk in chunked(data, cuts):
        frames += decoder.receive_data(chunk)
    assert frames == [Frame(header=h, payload=p) for h, p in items]
    assert decoder.buffered == 0


def _outcome(chunks: list[bytes]) -> tuple[list[Frame], bool]:
    decoder = TTHeaderFrameDecoder(max_frame_size=1 << 16)
    frames: list[Frame] = []
    try:
        for chunk in chunks:
            frames += decoder.receive_data(chunk)
    except ProtocolError:
        return frames, True
    return frames, False


@st.composite
def hostile_streams(draw: st.DrawFn) -> bytes:
    """Valid frames, random bytes, and valid frames with bytes flipped, cut or inserted."""
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            parts.append(draw(st.binary(max_size=40)))
            continue
        data = bytearray(encode_frame(draw(headers), draw(st.binary(max_size=16))))
        if kind == 2 and data:
            for _ in range(draw(st.integers(1, 4))):
                i = draw(st.integers(0, len(data) - 1))
                op = draw(st.integers(0, 2))
                if op == 0:
                    data[i] = draw(st.integers(0, 255))
                elif op == 1:
                    del data[i:]
                    if not data:
                        break
                else:
                    data[i:i] = draw(st.binary(min_size=1, max_size=3))
        parts.append(bytes(data))
    return b"".join(parts)


@settings(max_examples=300)
@given(
    data=st.one_of(st.binary(max_size=200), hostile_streams()),
    cuts=st.lists(st.integers(0, 500), max_size=10),
)
def test_any_bytes_yield_frames_or_protocol_error(data: bytes, cuts: list[int]) -> None:
    whole = _outcome([data])
    split = _outcome(chunked(data, cuts))
    assert whole[1] == split[1]  # both fail or neither does: no other exception can escape
    if not whole[1]:
        assert whole[0] == split[0]
    with contextlib.suppress(ProtocolError):
        decode_frame(data)
