"""kitex_grpc.protobuf.load: .proto files at run time, wire-compatible with generated code."""

from __future__ import annotations

from pathlib import Path

import pytest

import kitex_grpc
from kitex_grpc import client
from kitex_grpc.codegen import CodegenError
from kitex_grpc.serviceinfo import StreamingMode
from tests.support import serve

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "protos" / "echo" / "v1" / "echo.proto"


def test_load_gives_messages_and_service_info() -> None:
    mod = kitex_grpc.protobuf.load(ECHO)
    info = mod.service_info("Echo")
    assert info.full_name == "echo.v1.Echo"
    assert [m.mode for m in info.methods.values()] == [
        StreamingMode.UNARY, StreamingMode.SERVER, StreamingMode.CLIENT, StreamingMode.BIDIRECTIONAL
    ]  # fmt: skip
    req = mod.EchoRequest(message="m", seq=3)
    assert mod.message("echo.v1.EchoRequest").FromString(req.SerializeToString()).seq == 3
    with pytest.raises(AttributeError):
        _ = mod.Nope
    with pytest.raises(KeyError, match="loaded services"):
        mod.service_info("Nope")


def test_load_failure_is_a_codegen_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto3"; message {')
    with pytest.raises(CodegenError, match="protoc failed"):
        kitex_grpc.protobuf.load(bad)


async def test_loaded_client_calls_a_generated_server() -> None:
    mod = kitex_grpc.protobuf.load(ECHO)
    async with serve() as (svr, _):
        cli = kitex_grpc.new_client(mod.service_info("Echo"), "echo", client.with_host_ports(svr.address))
        try:
            reply = await cli.call("Unary", mod.EchoRequest(message="loaded", seq=9))
            assert (reply.message, reply.seq) == ("loaded", 9)
            assert type(reply) is mod.EchoReply
        finally:
            await cli.close()
