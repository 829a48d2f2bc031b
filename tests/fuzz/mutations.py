"""Valid captured requests for every transport, and hypothesis strategies that mutate them.

Each seed is the bytes of one complete, valid call built with the project's own encoders, plus the
places in it that matter to a decoder: where each frame starts and where each length field sits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h2.config
import h2.connection
from hypothesis import strategies as st

from gen.echo.v1 import echo_pb2
from kitex_grpc.codec.envelope import KITEX_PROTOBUF, THRIFT
from kitex_grpc.transport.ttheader.wire import Framing, encode
from tests.h2.helpers import grpc_frame
from tests.ttheader.support import ECHO_INFO, Req

PREFACE_SIZE = 24  # RFC 9113 section 3.4: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass(frozen=True)
class Seed:
    """One valid request: its bytes, the offsets where its frames start, and its length fields."""

    name: str
    data: bytes
    frames: tuple[int, ...]
    # (offset, width) of each length field, so that edits hit the fields a decoder trusts
    lengths: tuple[tuple[int, int], ...] = field(default=())


def h2_call(message: str = "fuzz") -> Seed:
    """A gRPC unary call over HTTP/2 as a client writes it: preface, SETTINGS, HEADERS, DATA (END_STREAM)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(
        sid,
        [
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/echo.v1.Echo/Unary"),
            (b":authority", b"echo"), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
            (b"grpc-timeout", b"5S"),
        ],
    )  # fmt: skip
    body = echo_pb2.EchoRequest(message=message).SerializeToString()
    conn.send_data(sid, grpc_frame(body), end_stream=True)
    data = conn.data_to_send()
    frames: list[int] = []
    lengths: list[tuple[int, int]] = []
    offset = PREFACE_SIZE
    while offset < len(data):  # RFC 9113 section 4.1: 24-bit length, type, flags, stream id
        frames.append(offset)
        lengths.append((offset, 3))
        size = int.from_bytes(data[offset : offset + 3], "big")
        if data[offset + 3] == 0:  # DATA: the gRPC message's own 4-byte length after its flag byte
            lengths.append((offset + 10, 4))
        offset += 9 + size
    return Seed("h2", data, tuple(frames), tuple(lengths))


def thrift_echo_body(message: str = "fuzz") -> bytes:
    method = ECHO_INFO.methods["echo"]
    assert method.pack_request is not None
    return method.serialize_request(method.pack_request(Req(message=message)))


def ttheader_seeds() -> list[Seed]:
    """Thrift echo calls in the four framings the TTHeader port detects."""
    body = thrift_echo_body()
    seeds = []
    for framing in (Framing.TTHEADER, Framing.TTHEADER_FRAMED, Framing.FRAMED, Framing.BUFFERED):
        if framing.has_header:
            data = encode(framing, THRIFT, "echo", 1, 7, body, {"idl-service-name": "Echo"}, {12: "5000"})
            lengths: list[tuple[int, int]] = [(0, 4), (12, 2)]  # frame length, header size (in 4-byte words)
        else:
            data = encode(framing, THRIFT, "echo", 1, 7, body)
            lengths = [(0, 4)] if framing.framed else []
        seeds.append(Seed(f"thrift-{framing.name.lower()}", data, (0,), tuple(lengths)))
    return seeds


def kitex_protobuf_seeds() -> list[Seed]:
    """Kitex Protobuf unary calls inside TTHeader (framed) and Framed."""
    body = echo_pb2.EchoRequest(message="fuzz").SerializeToString()
    in_ttheader = encode(Framing.TTHEADER_FRAMED, KITEX_PROTOBUF, "Unary", 1, 9, body, {}, {})
    framed = encode(Framing.FRAMED, KITEX_PROTOBUF, "Unary", 1, 9, body)
    return [
        Seed("kpb-ttheader-framed", in_ttheader, (0,), ((0, 4), (12, 2))),
        Seed("kpb-framed", framed, (0,), ((0, 4),)),
    ]


def ttstream_seeds() -> list[Seed]:
    """A TTHeader Streaming bidi stream as a client writes it: Header, two Data frames, Trailer (and a
    second stream cancelled with an Rst), each frame's length and header size marked."""
    from kitex_grpc.codec import thrift as thrift_codec
    from kitex_grpc.protocol.ttstream import FrameType, encode_exception_payload, encode_stream_frame
    from tests.ttstream.support import Request

    body = thrift_codec.serializer(Request)(Request(message="fuzz", seq=1))
    frames = [
        encode_stream_frame(FrameType.HEADER, 1, "EchoBidi", b"", {"isn": "StreamService"}, {28: "5000"}),
        encode_stream_frame(FrameType.DATA, 1, "EchoBidi", body),
        encode_stream_frame(FrameType.DATA, 1, "EchoBidi", body),
        encode_stream_frame(FrameType.TRAILER, 1, "EchoBidi"),
        encode_stream_frame(FrameType.HEADER, 3, "EchoServer", b"", {"isn": "StreamService"}),
        encode_stream_frame(
            FrameType.RST,
            3,
            "EchoServer",
            encode_exception_payload("EchoServer", 3, "cancel", 12007),
            {"ttscp": "A"},
        ),
    ]
    starts, offset = [], 0
    for frame in frames:
        starts.append(offset)
        offset += len(frame)
    lengths = tuple(pair for start in starts for pair in ((start, 4), (start + 12, 2)))
    return [Seed("ttstream", b"".join(frames), tuple(starts), lengths)]


INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFF, 0xFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Seed]) -> bytes:
    """A seed with one to four mutations: bit flips, truncation, splices (with another seed or random
    bytes), length-field edits, repeated frames; sometimes two seeds back to back (pipelining)."""
    seed = draw(st.sampled_from(seeds))
    data = bytearray(seed.data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "splice", "length", "repeat", "pipeline", "bytes"]))
        if not data:
            data = bytearray(seed.data)
        if kind == "flip":
            for _ in range(draw(st.integers(1, 8))):
                pos = draw(st.integers(0, len(data) - 1))
                data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif kind == "splice":
            other = draw(st.sampled_from(seeds)).data
            a, b = sorted(draw(st.tuples(st.integers(0, len(other)), st.integers(0, len(other)))))
            pos = draw(st.integers(0, len(data)))
            cut = draw(st.integers(0, len(data) - pos))
            data[pos : pos + cut] = other[a:b]
        elif kind == "length" and seed.lengths:
            offset, width = draw(st.sampled_from(seed.lengths))
            if offset + width <= len(data):
                old = int.from_bytes(data[offset : offset + width], "big")
                value = draw(st.sampled_from([*INTERESTING, old + 1, old - 1, old * 2, old // 2]))
                data[offset : offset + width] = (value % (1 << (8 * width))).to_bytes(width, "big")
        elif kind == "repeat":
            bounds = [*seed.frames, len(seed.data)]
            i = draw(st.integers(0, len(bounds) - 2))
            start, end = bounds[i], bounds[i + 1]
            times = draw(st.integers(1, 50))
            data[end:end] = seed.data[start:end] * times
        elif kind == "pipeline":
            data += draw(st.sampled_from(seeds)).data
        else:
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)
