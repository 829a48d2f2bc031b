"""ttstream frames and stream states, sans-IO (KITEX-WIRE-2.md §11.2-11.4, §11.7, §11.14)."""

from __future__ import annotations

import pytest

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol import ttstream
from kitex_grpc.protocol.frames import FramesBeforeError
from kitex_grpc.protocol.ttheader import TTHeader, encode_frame
from kitex_grpc.protocol.ttstream import (
    FrameType,
    StreamFrameDecoder,
    decode_exception_payload,
    encode_exception_payload,
    encode_stream_frame,
)
from kitex_grpc.protocol.ttstream_state import Event, StreamState

# §11.14, computed from the encoder rules in the spec (int keys in the order 27, 9).
HEADER_HEX = (
    "000000321000000200000001000a1000010001000369736e000b5465737453657276696365"
    "100002001b000132000900044563686f00"
)
DATA_HEX = "".join(
    "00000028 1000 0002 00000001 0005 | 10 00 | 10 0002 001b 0001 33 0009 0004 4563686f | 0000 "
    "| 0b 0001 00000002 6869 00".replace("|", "").split()
)
TRAILER_HEX = "".join(
    "0000001e 1000 0002 00000001 0005 | 10 00 | 10 0002 001b 0001 34 0009 0004 4563686f | 0000".replace(
        "|", ""
    ).split()
)


def test_worked_bytes_of_section_11_14() -> None:
    assert encode_stream_frame(FrameType.HEADER, 1, "Echo", b"", {"isn": "TestService"}).hex() == HEADER_HEX
    body = bytes.fromhex("0b000100000002686900")  # Request{1: "hi"}, a bare struct
    assert encode_stream_frame(FrameType.DATA, 1, "Echo", body).hex() == DATA_HEX
    assert encode_stream_frame(FrameType.TRAILER, 1, "Echo").hex() == TRAILER_HEX


def test_decoder_reads_frames_split_anywhere() -> None:
    wire = bytes.fromhex(HEADER_HEX + DATA_HEX + TRAILER_HEX)
    decoder = StreamFrameDecoder()
    frames = []
    for i in range(len(wire)):
        frames += decoder.receive_data(wire[i : i + 1])
    assert [(f.type, f.sid, f.method) for f in frames] == [
        (FrameType.HEADER, 1, "Echo"),
        (FrameType.DATA, 1, "Echo"),
        (FrameType.TRAILER, 1, "Echo"),
    ]
    assert frames[0].str_info == {"isn": "TestService"}
    assert frames[1].payload == bytes.fromhex("0b000100000002686900")


def test_a_frame_without_the_streaming_flag_fails_the_decoder() -> None:
    good = encode_stream_frame(FrameType.DATA, 1, "Echo", b"\x00")
    plain = encode_frame(TTHeader(seq_id=1, int_info={27: "3", 9: "Echo"}), b"\x00")
    with pytest.raises(FramesBeforeError, match="unexpected header flags") as info:
        StreamFrameDecoder().receive_data(good + plain)
    assert len(info.value.frames) == 1


@pytest.mark.parametrize("value", ["0", "6", "x", ""])
def test_an_unknown_frame_type_fails_the_decoder(value: str) -> None:
    frame = encode_frame(TTHeader(flags=2, seq_id=1, int_info={27: value, 9: "Echo"}), b"")
    with pytest.raises(ProtocolError, match="unexpected frame type"):
        StreamFrameDecoder().receive_data(frame)


def test_exception_payload_round_trip_and_kitex_shape() -> None:
    payload = encode_exception_payload("Echo", 7, "boom", 6)
    # 80 01 00 03 | len "Echo" | sid 7 | 0b 0001 len "boom" | 08 0002 00000006 | 00 (§11.8)
    assert payload.hex() == "80010003000000044563686f000000070b000100000004626f6f6d0800020000000600"
    assert decode_exception_payload(payload) == ("boom", 6)
    with pytest.raises(ProtocolError):
        decode_exception_payload(bytes.fromhex("80010002000000044563686f0000000700"))  # a REPLY


def test_stream_ids_skip_zero_and_wrap_to_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    import itertools

    monkeypatch.setattr(ttstream, "_counter", itertools.count((1 << 31) - 1))
    assert [ttstream.next_stream_id() for _ in range(2)] == [(1 << 31) - 1, -(1 << 31)]
    monkeypatch.setattr(ttstream, "_counter", itertools.count((1 << 32) - 1))
    assert [ttstream.next_stream_id() for _ in range(2)] == [-1, 1]  # 0 is skipped


def test_server_state_header_first_then_data_then_trailer() -> None:
    state = StreamState(client=False)
    assert state.before_data() is True  # the server's Header goes before its first Data
    assert state.before_data() is False
    assert state.receive(FrameType.DATA) is Event.MESSAGE
    assert state.receive(FrameType.TRAILER) is Event.HALF_CLOSE
    assert state.receive(FrameType.DATA) is Event.IGNORE
    assert state.before_trailer() is False and state.send_closed
    with pytest.raises(ProtocolError, match="closed send"):
        state.before_data()
    fresh = StreamState(client=False)
    assert fresh.before_trailer() is True  # no Data was sent: the Header goes with the Trailer


def test_client_state_second_header_is_an_error() -> None:
    state = StreamState(client=True)
    assert state.before_data() is False  # the client's Header opened the stream
    assert state.receive(FrameType.HEADER) is Event.HEADER
    with pytest.raises(ProtocolError, match="unexpected header"):
        state.receive(FrameType.HEADER)
    assert state.receive(FrameType.META) is Event.IGNORE
    assert state.receive(FrameType.TRAILER) is Event.END
    assert state.receive(FrameType.RST) is Event.IGNORE
    other = StreamState(client=True)
    assert other.receive(FrameType.RST) is Event.RESET
