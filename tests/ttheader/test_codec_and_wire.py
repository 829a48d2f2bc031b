"""Sans-IO parts: the thriftpy2 codec hooks, message encode/decode in every framing, golden bytes."""

from __future__ import annotations

import struct

import pytest

from kitex_grpc.codec.envelope import KITEX_PROTOBUF, THRIFT
from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.thrift_message import MessageType
from kitex_grpc.serviceinfo import PayloadCodec, StreamingMode
from kitex_grpc.thrift import MissingResultError
from kitex_grpc.transport.ttheader.client import next_seq_id
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder, encode
from tests.ttheader.support import ECHO_INFO, Reply, Req, echo_thrift

# KITEX-WIRE.md §1.2 worked example: echo(1: Request{1: "hi"}), seq 1, str {isn: Hello},
# int {6: Hello, 9: echo}, TTHeader unframed.
WORKED_EXAMPLE = bytes.fromhex(
    "00000050" "10000000" "00000001" "000a"
    "0000" "01" "0001" "0003") + b"isn" + bytes.fromhex("0005") + b"Hello" + bytes.fromhex(
    "10" "0002" "0006" "0005") + b"Hello" + bytes.fromhex("0009" "0004") + b"echo" + bytes.fromhex(
    "000000" "80010001" "00000004") + b"echo" + bytes.fromhex("00000001" "0c0001" "0b0001" "00000002"
) + b"hi" + bytes.fromhex("0000")  # fmt: skip


def test_service_info_from_idl() -> None:
    assert ECHO_INFO.service_name == "Echo"
    assert ECHO_INFO.payload_codec is PayloadCodec.THRIFT
    assert list(ECHO_INFO.methods) == ["echo", "notify", "fail"]
    assert all(m.mode is StreamingMode.NONE for m in ECHO_INFO.methods.values())
    assert ECHO_INFO.methods["notify"].oneway
    assert not ECHO_INFO.methods["echo"].oneway


def test_worked_example_golden_bytes() -> None:
    method = ECHO_INFO.methods["echo"]
    assert method.pack_request is not None
    body = method.serialize_request(method.pack_request(Req(message="hi")))
    data = encode(
        Framing.TTHEADER, THRIFT, "echo", MessageType.CALL, 1, body, {"isn": "Hello"}, {6: "Hello", 9: "echo"}
    )
    assert data == WORKED_EXAMPLE
    [msg] = MessageDecoder(Framing.TTHEADER, 1 << 20).receive_data(data)
    assert (msg.method, msg.msg_type, msg.seq_id, msg.framing) == ("echo", 1, 1, Framing.TTHEADER)
    assert msg.header is not None and dict(msg.header.str_info) == {"isn": "Hello"}
    assert method.deserialize_request(msg.body).req == Req(message="hi")


def test_pack_unpack_and_adapt_handler() -> None:
    echo, fail = ECHO_INFO.methods["echo"], ECHO_INFO.methods["fail"]
    assert echo.pack_request is not None and echo.unpack_response is not None
    args = echo.pack_request(Req(message="a"))
    assert isinstance(args, echo_thrift.Echo.echo_args) and echo.pack_request(args) is args
    assert echo.unpack_response(echo_thrift.Echo.echo_result(success=Reply(message="r"))).message == "r"
    with pytest.raises(MissingResultError):
        echo.unpack_response(echo_thrift.Echo.echo_result())
    assert fail.unpack_response is not None
    with pytest.raises(echo_thrift.EchoError):
        fail.unpack_response(echo_thrift.Echo.fail_result(err=echo_thrift.EchoError(code=1)))


async def test_adapt_handler_puts_idl_exceptions_in_the_result() -> None:
    fail = ECHO_INFO.methods["fail"]
    assert fail.adapt_handler is not None

    async def handler(req: object) -> object:
        raise echo_thrift.EchoError(code=7, message="boom")

    result = await fail.adapt_handler(handler)(echo_thrift.Echo.fail_args(req=Req()))
    assert (result.err.code, result.err.message, result.success) == (7, "boom", None)

    async def plain(req: object) -> object:
        raise ValueError("plain")

    with pytest.raises(ValueError):
        await fail.adapt_handler(plain)(echo_thrift.Echo.fail_args(req=Req()))


@pytest.mark.parametrize("framing", [Framing.TTHEADER, Framing.TTHEADER_FRAMED, Framing.FRAMED])
def test_thrift_round_trip_in_each_framing_byte_by_byte(framing: Framing) -> None:
    data = encode(framing, THRIFT, "echo", MessageType.REPLY, 9, b"\x00", {"a": "b"}, {22: "2"})
    decoder = MessageDecoder(framing, 1 << 20)
    out = [m for i in range(len(data)) for m in decoder.receive_data(data[i : i + 1])]
    assert [(m.method, m.msg_type, m.seq_id, m.body) for m in out] == [("echo", 2, 9, b"\x00")]
    # A TTHeader decoder recognises the framed payload and reports it, so a server can mirror it.
    assert out[0].framing is framing
    if framing is Framing.TTHEADER_FRAMED:
        header_words = struct.unpack_from(">H", data, 12)[0]
        payload = data[14 + header_words * 4 :]
        assert struct.unpack_from(">I", payload)[0] == len(payload) - 4


def test_kitex_protobuf_travels_framed_inside_ttheader() -> None:
    data = encode(Framing.TTHEADER_FRAMED, KITEX_PROTOBUF, "Unary", 1, 3, b"\x0a\x01x")
    assert data[14:16] == b"\x00\x00"  # protocol id 0 even for Kitex Protobuf (header_codec.go)
    [msg] = MessageDecoder(Framing.TTHEADER, 1 << 20).receive_data(data)
    assert msg.envelope is KITEX_PROTOBUF and (msg.method, msg.seq_id, msg.body) == ("Unary", 3, b"\x0a\x01x")
    plain = encode(Framing.FRAMED, KITEX_PROTOBUF, "Unary", 1, 3, b"")
    [msg] = MessageDecoder(Framing.FRAMED, 1 << 20).receive_data(plain)
    assert msg.envelope is KITEX_PROTOBUF


def test_buffered_messages_split_by_walking_the_struct() -> None:
    one = encode(
        Framing.BUFFERED, THRIFT, "echo", 1, 1, b"\x0c\x00\x01\x0b\x00\x01\x00\x00\x00\x02hi\x00\x00"
    )
    two = encode(Framing.BUFFERED, THRIFT, "echo", 1, 2, b"\x00")
    decoder = MessageDecoder(Framing.BUFFERED, 1 << 20)
    stream = one + two
    got = decoder.receive_data(stream[:10]) + decoder.receive_data(stream[10:])
    assert [m.seq_id for m in got] == [1, 2] and decoder.buffered == 0
    with pytest.raises(ProtocolError):
        MessageDecoder(Framing.BUFFERED, 1 << 20).receive_data(
            b"\x80\x01\x00\x01\x00\x00\x00\x01e\x00\x00\x00\x01\x7f"
        )


def test_exception_bodies_round_trip_in_both_envelopes() -> None:
    for envelope in (THRIFT, KITEX_PROTOBUF):
        assert envelope.decode_exception(envelope.encode_exception("biz error: boom", 6)) == (
            "biz error: boom",
            6,
        )


def test_seq_ids_are_process_global_and_skip_zero() -> None:
    import kitex_grpc.transport.ttheader.client as mod

    first = next_seq_id()
    assert next_seq_id() == first + 1
    saved = mod._seq
    try:
        mod._seq = 0x7FFFFFFF
        assert next_seq_id() == -0x80000000  # int32 wrap-around, as Go's atomic.AddInt32
        mod._seq = -1
        assert next_seq_id() == 1  # 0 is skipped
    finally:
        mod._seq = saved


# -- reused (de)serialization buffers (kitex_grpc/codec/thrift.py) ---------------------------------------


def test_reused_buffers_survive_bad_bytes_and_large_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pools are the Cython path's; in the compiled build the fast path (thrift_binary) sits in front
    # of it, so the Cython path is called directly here.
    from kitex_grpc.codec import thrift as codec

    args_type = echo_thrift.Echo.echo_args
    read = codec.cython_deserializer(args_type)
    write = codec.write_cython
    small = write(args_type(Req(message="small")))
    with monkeypatch.context() as patched:  # without the walk (test_thrift_bounds.py) the reader fails
        patched.setattr(codec, "body_check", lambda struct_type: len)
        unchecked = codec.cython_deserializer(args_type)
        with pytest.raises(ProtocolError, match="cannot decode echo_args: SystemError"):
            unchecked(b"\x0c\x00\x01\x0b\x00\x01\xff\xff\xff\xff")  # negative length
    assert read(small).req == Req(message="small")  # the pooled reader starts afresh
    big = Req(message="x" * (codec._POOLED_MAX_BYTES + 1))
    pooled = len(codec._writers), len(codec._readers)
    big_body = write(args_type(big))
    assert read(big_body).req == big
    assert pooled >= (1, 1)  # the calls above left a pair in each pool; the big calls took them
    assert (len(codec._writers), len(codec._readers)) == (pooled[0] - 1, pooled[1] - 1)  # not kept
    assert write(args_type(Req(message="small"))) == small  # no leftovers
    with pytest.raises(Exception):  # noqa: B017 - thriftpy2 raises its own types for a bad struct
        write(args_type(Req(message=object())))
    assert write(args_type(Req(message="small"))) == small


@pytest.mark.parametrize("path", ["public", "cython"])
def test_reused_buffers_are_per_caller_across_threads(path: str) -> None:
    import threading

    from kitex_grpc.codec import thrift as codec

    method = ECHO_INFO.methods["echo"]
    assert method.pack_request is not None
    pack, write, read = method.pack_request, method.serialize_request, method.deserialize_request
    if path == "cython":  # the pooled buffers, behind the compiled build's fast path
        write, read = codec.write_cython, codec.cython_deserializer(echo_thrift.Echo.echo_args)
    failures: list[str] = []
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        start.wait(timeout=10)
        for i in range(2000):
            req = Req(message=f"{n}-{i}" * (1 + i % 7))
            if read(write(pack(req))).req != req:
                failures.append(f"{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


@pytest.mark.parametrize("cut", [1, 2, 5, 8])
def test_a_struct_cut_short_is_refused_not_read_as_complete(cut: int) -> None:
    method = ECHO_INFO.methods["echo"]
    assert method.pack_request is not None
    body = method.serialize_request(method.pack_request(Req(message="m", payload=b"p" * 40, seq=7)))
    with pytest.raises(ProtocolError, match="runs past the end"):
        method.deserialize_request(body[:-cut])  # thriftpy2 alone reads the rest as zeros
    assert method.deserialize_request(body + b"trailing").req.seq == 7  # bytes after the end: ignored


def test_a_string_longer_than_its_message_is_refused_not_filled_from_memory() -> None:
    method = ECHO_INFO.methods["echo"]
    # args{1: EchoRequest{1: string of declared length 4096, 2 bytes present}}
    body = b"\x0c\x00\x01\x0b\x00\x01\x00\x00\x10\x00ab"
    with pytest.raises(ProtocolError, match="runs past the end of the body"):
        method.deserialize_request(body)
    assert method.deserialize_response is not None
    with pytest.raises(ProtocolError, match="cannot decode echo_result"):
        method.deserialize_response(b"\x0c\x00\x00\x0b\x00\x01\x00\x00\x10\x00ab")
