"""Thrift IDL streaming methods: the ``streaming.mode`` annotation, the method infos it gives, the bare
struct messages, and the client/handler shapes (item 1 of issue 27; KITEX-WIRE-2.md §11.6, §12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kitex_grpc import client, thrift
from kitex_grpc.serviceinfo import PayloadCodec, StreamingMode
from kitex_grpc.streaming import ServerStreamCall
from kitex_grpc.transport_protocol import TransportProtocol

ROOT = Path(__file__).resolve().parents[2]
stream_thrift: Any = thrift.load(ROOT / "idl" / "stream.thrift")
INFO = thrift.service_info(stream_thrift.StreamService)


def _load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "idl_case.thrift"
    path.write_text(text)
    return thrift.load(path, f"case_{abs(hash(text))}_thrift")


def test_modes_come_from_the_annotation() -> None:
    modes = {name: mi.mode for name, mi in INFO.methods.items()}
    assert modes == {
        "Echo": StreamingMode.NONE,
        "EchoUnary": StreamingMode.UNARY,
        "EchoClient": StreamingMode.CLIENT,
        "EchoServer": StreamingMode.SERVER,
        "EchoBidi": StreamingMode.BIDIRECTIONAL,
    }
    assert INFO.payload_codec is PayloadCodec.THRIFT


def test_stream_messages_are_the_bare_argument_and_return_structs() -> None:
    for name in ("EchoClient", "EchoServer", "EchoBidi"):
        mi = INFO.methods[name]
        assert mi.request_type is stream_thrift.StreamRequest
        assert mi.response_type is stream_thrift.StreamReply
        assert mi.pack_request is None and mi.unpack_response is None and mi.adapt_handler is None


def test_bare_struct_bytes_as_kitex_writes_them() -> None:
    # KITEX-WIRE-2.md §11.14: Request{message:"hi"} is 0b 0001 00000002 6869 00, no envelope, no wrapper
    mi = INFO.methods["EchoBidi"]
    data = mi.serialize_request(stream_thrift.StreamRequest(message="hi"))
    assert data == bytes.fromhex("0b00010000000268690" + "0")
    assert mi.deserialize_request(data) == stream_thrift.StreamRequest(message="hi")
    reply = mi.deserialize_response(bytes.fromhex("0a0003000000000000000700"))
    assert reply == stream_thrift.StreamReply(seq=7)


def test_unary_mode_keeps_the_args_and_result_wrappers() -> None:
    mi = INFO.methods["EchoUnary"]
    assert mi.request_type is stream_thrift.StreamService.EchoUnary_args
    assert mi.response_type is stream_thrift.StreamService.EchoUnary_result
    args = mi.pack_request(stream_thrift.StreamRequest(message="hi"))
    # field 1 (req) wraps the struct: 0c 0001 <struct> 00
    assert mi.serialize_request(args) == bytes.fromhex("0c0001" + "0b0001000000026869" + "00" + "00")


@pytest.mark.parametrize(
    ("decl", "error"),
    [
        ('R m(1: Q q) (streaming.mode="both")', "invalid value 'both' for annotation streaming.mode"),
        ('R m(1: Q q, 2: Q p) (streaming.mode="server")', "should have exactly 1 argument, not 2"),
        ('R m() (streaming.mode="client")', "should have exactly 1 argument, not 0"),
        ('R m(1: Q q, 2: Q p) (streaming.mode="unary")', "should have exactly 1 argument"),
        ('R m(1: string s) (streaming.mode="bidirectional")', "its argument 's' must be a struct"),
        ('void m(1: Q q) (streaming.mode="server")', "must return a struct"),
        ('string m(1: Q q) (streaming.mode="server")', "must return a struct"),
        ('oneway void m(1: Q q) (streaming.mode="client")', "a oneway method cannot stream"),
    ],
)
def test_idl_errors_are_refused_with_the_method_named(tmp_path: Path, decl: str, error: str) -> None:
    structs = "struct Q { 1: string s }\nstruct R { 1: string s }\n"
    module = _load(tmp_path, f"{structs}service S {{ {decl} }}\n")
    with pytest.raises(ValueError, match="'m'") as info:
        thrift.service_info(module.S)
    assert error in str(info.value)


def test_an_inherited_method_keeps_its_declared_mode(tmp_path: Path) -> None:
    module = _load(
        tmp_path,
        "struct Q { 1: string s }\n"
        'service Base { Q watch(1: Q q) (streaming.mode="server") Q plain(1: Q q) }\n'
        'service Child extends Base { Q chat(1: Q q) (streaming.mode="bidirectional") }\n',
    )
    modes = {n: mi.mode for n, mi in thrift.service_info(module.Child).methods.items()}
    assert modes == {
        "chat": StreamingMode.BIDIRECTIONAL,
        "watch": StreamingMode.SERVER,
        "plain": StreamingMode.NONE,
    }


async def test_thrift_client_gives_streaming_methods_the_protobuf_stream_shapes() -> None:
    # The call objects exist before any connection: a server stream opens on first use; client and
    # bidi streams open when awaited (checked end to end in test_grpc_thrift.py).
    cli = thrift.new_client(
        stream_thrift.StreamService,
        "stream",
        client.with_host_ports("127.0.0.1:1"),
        client.with_transport_protocol(TransportProtocol.GRPC_H2),
    )
    try:
        call = cli.EchoServer(stream_thrift.StreamRequest(message="x"))
        assert isinstance(call, ServerStreamCall)
        assert cli.EchoServer.__name__ == "EchoServer"
        assert callable(cli.EchoClient) and callable(cli.EchoBidi)
        with pytest.raises(AttributeError):
            _ = cli.Nope
    finally:
        await cli.close()
