"""The stream bookkeeping Framed and TTHeader decoding share (kitex_grpc/protocol/frames.py)."""

from __future__ import annotations

import pytest

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.frames import i32_at, parse_source, u32_at
from kitex_grpc.protocol.thrift_message import FramedDecoder, encode_framed
from kitex_grpc.protocol.ttheader import TTHeader, TTHeaderFrameDecoder, encode_frame


def test_big_endian_reads() -> None:
    data = b"\x00\x00\x01\x02\xff\xff\xff\xfe\x80\x00\x00\x00"
    assert u32_at(data, 0) == 0x0102
    assert u32_at(data, 4) == 0xFFFFFFFE and i32_at(data, 4) == -2
    assert u32_at(data, 8) == 1 << 31 and i32_at(data, 8) == -(1 << 31)
    assert i32_at(data, 0) == 0x0102


def _framed(payloads: list[bytes]) -> bytes:
    return b"".join(encode_framed(p) for p in payloads)


def _ttheader(payloads: list[bytes]) -> bytes:
    return b"".join(encode_frame(TTHeader(seq_id=i, str_info={"k": "v"}), p) for i, p in enumerate(payloads))


PAYLOADS = [b"first", b"", b"x" * 300]


def test_framed_stream_cut_anywhere_in_two_places_gives_the_same_frames() -> None:
    stream = _framed(PAYLOADS)
    for a in range(len(stream) + 1):
        for b in range(a, len(stream) + 1, 7):
            decoder = FramedDecoder()
            out = [f for part in (stream[:a], stream[a:b], stream[b:]) for f in decoder.receive_data(part)]
            assert out == PAYLOADS, (a, b)
            assert decoder.buffered == 0


def test_ttheader_stream_cut_anywhere_in_two_places_gives_the_same_frames() -> None:
    stream = _ttheader(PAYLOADS)
    for a in range(len(stream) + 1):
        for b in range(a, len(stream) + 1, 7):
            decoder = TTHeaderFrameDecoder()
            parts = (stream[:a], memoryview(stream)[a:b], bytearray(stream[b:]))
            out = [f for part in parts for f in decoder.receive_data(part)]
            assert [(f.header.seq_id, f.payload) for f in out] == list(enumerate(PAYLOADS)), (a, b)
            assert decoder.buffered == 0


def test_an_unfinished_frame_is_held_back_byte_for_byte() -> None:
    stream = _framed([b"done", b"0123456789"])
    decoder = FramedDecoder()
    assert decoder.receive_data(stream[:-3]) == [b"done"]
    assert decoder.buffered == 4 + 7  # the second frame's length and the 7 body bytes that came
    assert decoder.receive_data(stream[-3:-1]) == []
    assert decoder.buffered == 4 + 9
    assert decoder.receive_data(stream[-1:]) == [b"0123456789"]
    assert decoder.buffered == 0


def test_an_oversize_length_is_refused_when_its_last_byte_arrives_in_a_later_read() -> None:
    decoder = FramedDecoder(max_frame_size=100)
    assert decoder.receive_data(b"\x00\x00") == []
    with pytest.raises(ProtocolError, match="frame length 101 exceeds the limit 100"):
        decoder.receive_data(b"\x00\x65")  # no body byte has arrived: the length alone is refused
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.receive_data(b"")


def test_a_bad_magic_is_refused_before_the_frame_is_complete() -> None:
    decoder = TTHeaderFrameDecoder()
    assert decoder.receive_data(b"\x00\x00\x00\x40\x10") == []  # a length and half the magic
    with pytest.raises(ProtocolError, match="not TTHeader protocol"):
        decoder.receive_data(b"\x01\x00\x00")  # magic 0x1001: wrong, 61 bytes of the frame still due


def test_a_first_frame_that_is_not_whole_goes_to_the_buffer_at_once() -> None:
    # A large read is copied once into the buffer, not into bytes first and then into the buffer
    # (issue 25 item 2).
    buffer = bytearray()
    head = (200_000).to_bytes(4, "big")
    read = memoryview(head + b"a" * 100_000)  # half of a 200,000-byte frame
    assert parse_source(buffer, read) is None
    assert buffer == read
    assert parse_source(buffer, b"b" * 100_000) == head + b"a" * 100_000 + b"b" * 100_000
    assert not buffer
    # A whole first frame, or a small read, is parsed from one bytes copy, the buffer untouched.
    whole = (70_000).to_bytes(4, "big") + b"c" * 70_000
    assert parse_source(buffer, memoryview(whole)) == whole and not buffer
    assert parse_source(buffer, b"\x00\x00\x00\x10abc") == b"\x00\x00\x00\x10abc" and not buffer
