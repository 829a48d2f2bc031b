"""The ``kitex-grpc`` command against the Go Kitex servers of interop/ (gRPC, Kitex Protobuf,
TTHeader, TTHeaderFramed, Framed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.support import ECHO_PROTO, ECHO_THRIFT, run
from tests.interop.kitex_peer import GoServer, build_binaries, go_server

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def kitex_server() -> Iterator[GoServer]:
    bin_dir: Path = build_binaries()
    with go_server(bin_dir) as server:
        yield server


@pytest.mark.parametrize("transport", ["grpc", "grpc-h2", "kitex-protobuf"])
def test_protobuf_unary_and_biz_error(kitex_server: GoServer, transport: str) -> None:
    base = ["call", kitex_server.pb, "echo.v1.Echo/Unary", "--idl", str(ECHO_PROTO), "--transport", transport]
    result = run(*base, "-d", '{"message": "go", "payload": "/wA=", "seq": -9223372036854775808}')
    assert (result.code, result.err) == (0, "")
    assert json.loads(result.out) == {"message": "go", "payload": "/wA=", "seq": -(2**63)}
    result = run(*base, "-d", '{"message": "biz:1001:bad thing"}')
    assert (result.code, result.out) == (1, "")
    assert result.err == 'kitex-grpc call: biz error: code=1001 message=bad thing\nextra: {"k": "v"}\n'


@pytest.mark.parametrize("transport", ["grpc", "grpc-h2"])
def test_protobuf_streams(kitex_server: GoServer, transport: str) -> None:
    base = ["call", kitex_server.pb, "--idl", str(ECHO_PROTO), "--transport", transport, "--format", "jsonl"]
    result = run(*base[:2], "echo.v1.Echo/ServerStream", *base[2:], "-d", '{"message": "s", "seq": 2}')
    assert (result.code, result.out) == (0, '{"message":"s"}\n{"message":"s","seq":1}\n')
    lines = '{"message": "a"}\n{"message": "b", "seq": 4}\n'
    result = run(*base[:2], "echo.v1.Echo/ClientStream", *base[2:], stdin=lines)
    assert (result.code, result.out) == (0, '{"message":"a,b","seq":2}\n')
    result = run(*base[:2], "echo.v1.Echo/Bidi", *base[2:], stdin=lines)
    assert (result.code, result.out) == (0, '{"message":"a"}\n{"message":"b","seq":4}\n')


@pytest.mark.parametrize("transport", ["ttheader", "ttheader-framed", "framed"])
def test_thrift(kitex_server: GoServer, transport: str) -> None:
    base = [
        "call",
        kitex_server.thrift,
        "--idl",
        str(ECHO_THRIFT),
        "--transport",
        transport,
        "--format",
        "jsonl",
    ]
    result = run(
        *base[:2],
        "Echo/echo",
        *base[2:],
        "-d",
        '{"message": "t", "payload": "AAE=", "seq": 9007199254740993}',
    )
    assert (result.code, result.err) == (0, "")
    assert json.loads(result.out) == {"message": "t", "payload": "AAE=", "seq": 9007199254740993}
    result = run(*base[:2], "Echo/fail", *base[2:], "-d", '{"message": "boom", "seq": 7}')
    assert (result.code, result.out) == (1, "")
    assert result.err == 'kitex-grpc call: IDL exception EchoError (err): {"code":7,"message":"boom"}\n'
    result = run(*base[:2], "Echo/echo", *base[2:], "-d", '{"message": "error:boom"}')
    assert (
        result.code == 1
        and result.err == "kitex-grpc call: RPC failed: remote or network error[remote]: biz error: boom\n"
    )
    result = run(*base[:2], "Echo/notify", *base[2:], "-d", '{"message": "n"}')
    assert (result.code, result.out, result.err) == (0, "", "")


def test_thrift_metainfo_both_ways(kitex_server: GoServer) -> None:
    base = ["call", kitex_server.thrift, "Echo/echo", "--idl", str(ECHO_THRIFT), "--transport", "ttheader"]
    result = run(
        *base, "-d", '{"message": "meta"}', "--meta", "temp=t1", "--meta-backward", "--format", "jsonl"
    )
    assert result.code == 0, result.err
    seen = json.loads(json.loads(result.out)["message"])
    assert seen["transient"] == {"temp": "t1"}
    assert result.err == 'backward metainfo: {"backward-key": "backward-value"}\n'
