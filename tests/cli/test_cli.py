"""The ``kitex-grpc`` command in a subprocess against our own servers: stdout, stderr, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gen.echo.v1 import echo_pb2
from tests.cli.support import (
    ECHO_PROTO,
    RICH_THRIFT,
    ROOT,
    Servers,
    best_of,
    command,
    env,
    run,
    running_servers,
)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    # The protobuf server's port speaks TTHeader (Kitex Protobuf) and hands HTTP/2 to GRPC_H2
    with running_servers("ttheader") as s:
        yield s


def test_help_starts_fast() -> None:
    assert best_of(3, "--help") < 0.3
    # what makes it fast, whatever the machine's speed: the command's module loads no RPC stack
    code = (
        "import sys, kitex_grpc.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'grpc', 'google', 'h2', 'thriftpy2'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert (loaded.returncode, loaded.stdout) == (0, "[]\n"), loaded.stderr
    result = run("call", "--help")
    assert result.code == 0 and "exit codes: 0 ok, 1 RPC failed" in result.out


def test_unary_by_reflection(servers: Servers) -> None:
    result = run(
        "call", servers.pb, "echo.v1.Echo/Unary", "-d", '{"message": "hi", "seq": "9223372036854775807"}'
    )
    assert (result.code, result.err) == (0, "")
    assert result.out == '{\n  "message": "hi",\n  "seq": 9223372036854775807\n}\n'


@pytest.mark.parametrize("transport", ["grpc", "grpc-h2", "kitex-protobuf"])
def test_unary_with_a_proto_idl_on_every_transport(servers: Servers, transport: str) -> None:
    args = ["call", servers.pb, "echo.v1.Echo/Unary", "--idl", str(ECHO_PROTO), "--transport", transport]
    gzip = ["--compression", "gzip"] if transport.startswith("grpc") else []
    result = run(*args, *gzip, "-d", '{"message": "x", "payload": "AAE="}', "--format", "jsonl")
    assert (result.code, result.out, result.err) == (0, '{"message":"x","payload":"AAE="}\n', "")


@pytest.mark.parametrize(
    ("data", "err"),
    [
        ('{"mesage": "hi"}', "kitex-grpc call: mesage: unknown field of echo.v1.EchoRequest\n"),
        ('{"seq": "x"}', "kitex-grpc call: seq: "),  # the rest is json_format's, per protobuf release
        ('{"message": ', "kitex-grpc call: malformed JSON: Expecting value: line 1 column 13 (char 12)\n"),
    ],
)
def test_bad_input_exits_2_with_the_field(servers: Servers, data: str, err: str) -> None:
    result = run("call", servers.pb, "echo.v1.Echo/Unary", "--idl", str(ECHO_PROTO), "-d", data)
    assert (result.code, result.out) == (2, "")
    assert (
        result.err == err
        if err.endswith("\n")
        else result.err.startswith(err) and result.err.count("\n") == 1
    )


def test_biz_error_exits_1_with_code_message_and_extra(servers: Servers) -> None:
    result = run("call", servers.pb, "echo.v1.Echo/Unary", "-d", '{"message": "biz:7:no way"}')
    assert (result.code, result.out) == (1, "")
    assert result.err == 'kitex-grpc call: biz error: code=7 message=no way\nextra: {"k": "v"}\n'


def test_streams(servers: Servers) -> None:
    pb = servers.pb
    result = run(
        "call", pb, "echo.v1.Echo/ServerStream", "-d", '{"message": "s", "seq": 2}', "--format", "jsonl"
    )
    assert (result.code, result.out) == (0, '{"message":"s"}\n{"message":"s","seq":1}\n')
    lines = '{"message": "a"}\n\n{"message": "b"}\n'
    result = run("call", pb, "echo.v1.Echo/ClientStream", "--format", "jsonl", stdin=lines)
    assert (result.code, result.out) == (0, '{"message":"a,b","seq":2}\n')
    result = run("call", pb, "echo.v1.Echo/Bidi", "--format", "jsonl", stdin=lines)
    assert (result.code, result.out, result.err) == (0, '{"message":"a"}\n{"message":"b"}\n', "")
    result = run("call", pb, "echo.v1.Echo/Bidi", "--format", "jsonl", "-d", '{"message": "d"}\n{"nope": 1}')
    assert (result.code, result.out) == (2, "")  # checked before the stream opens: nothing sent
    assert result.err == "kitex-grpc call: line 2: nope: unknown field of echo.v1.EchoRequest\n"
    result = run("call", pb, "echo.v1.Echo/Bidi", "--format", "jsonl", stdin='{"message": "e"}\n[1]\n')
    assert result.code == 2 and result.err.endswith("line 2: expected an object for echo.v1.EchoRequest\n")


def test_metainfo_headers_timeout_and_raw(servers: Servers) -> None:
    pb = servers.pb
    result = run(
        "call", pb, "echo.v1.Echo/Unary", "-d", '{"message": "meta"}', "--meta", "temp=t1",
        "--meta-persistent", "log_id=9", "-H", "x-trace:abc", "--format", "jsonl",
    )  # fmt: skip
    assert result.code == 0, result.err
    seen = json.loads(json.loads(result.out)["message"])
    assert seen["transient"] == {"TEMP": "t1"} and seen["persistent"] == {"LOG_ID": "9"}
    assert seen["metadata"] == {"x-trace": "abc"}
    result = run("call", pb, "echo.v1.Echo/Unary", "-d", '{"message": "block"}', "--timeout", "0.3")
    assert (
        result.code == 1
        and result.err.startswith("kitex-grpc call: RPC failed: ")
        and "timeout" in result.err
    )
    result = run("call", pb, "echo.v1.Echo/Unary", "-d", '{"message": "r", "seq": 5}', "--format", "raw")
    assert (result.code, result.raw) == (0, echo_pb2.EchoReply(message="r", seq=5).SerializeToString())
    result = run("call", pb, "echo.v1.Echo/Unary", "-d", '{"message": "v"}', "-v", "--transport", "grpc-h2")
    assert result.code == 0 and result.err.startswith("* /echo.v1.Echo/Unary over grpc_h2 to 127.0.0.1:")


@pytest.mark.parametrize("transport", ["ttheader", "ttheader-framed", "framed"])
def test_thrift_idl(servers: Servers, transport: str) -> None:
    base = ["call", servers.thrift, "--idl", str(RICH_THRIFT), "--transport", transport, "--format", "jsonl"]
    result = run(*base[:2], "Rich/Echo", *base[2:], "-d", '{"big": "-9223372036854775808", "tags": ["t"]}')
    assert result.code == 0, result.err
    assert json.loads(result.out)["big"] == -(2**63) and json.loads(result.out)["tags"] == ["t"]
    result = run(*base[:2], "Rich/Name", *base[2:], "-d", "plain text")
    assert (result.code, result.out) == (0, '"hello plain text"\n')
    result = run(*base[:2], "Rich/Echo", *base[2:], "-d", '{"big": -1}')
    assert (result.code, result.out) == (1, "")
    assert result.err == 'kitex-grpc call: IDL exception RichError (err): {"code":7,"reason":"minus one"}\n'
    result = run(*base[:2], "Rich/Echo", *base[2:], "-d", '{"big": 1, "by_id": {"k": {"id": 1}}}')
    assert (result.code, result.err) == (2, "kitex-grpc call: by_id['k']: map key 'k' is not a decimal i64\n")


def test_list_describe_health(servers: Servers) -> None:
    result = run("list", servers.pb)
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        "echo.v1.Echo",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    result = run("describe", servers.pb, "echo.v1.Echo")
    assert result.code == 0
    assert result.out.splitlines()[:3] == [
        "echo.v1.Echo is a service:",
        "service Echo {",
        "  rpc Unary(.echo.v1.EchoRequest) returns (.echo.v1.EchoReply);",
    ]
    result = run("describe", servers.pb, "echo.v1.EchoRequest")
    assert result.out.splitlines()[-4:] == [
        "  string message = 1;",
        "  bytes payload = 2;",
        "  int64 seq = 3;",
        "}",
    ]
    result = run("describe", servers.pb, "echo.v1.Nope")
    assert result.code == 1 and result.err.startswith("kitex-grpc describe: echo.v1.Nope: not found")
    result = run("health", servers.pb)
    assert (result.code, result.out) == (0, "SERVING\n")
    result = run("health", servers.pb, "echo.v1.Echo")
    assert (result.code, result.out) == (0, "SERVING\n")


P = "kitex-grpc call: "
NO_BACKWARD = "--meta-backward needs a TTHeader transport (Kitex's gRPC carries no backward values)"


@pytest.mark.parametrize(
    ("args", "code", "err"),
    [
        (["call", "127.0.0.1:9", "Echo", "-d", "{}"], 2, P + "method 'Echo': expected Service/Method\n"),
        (["call", "nowhere", "a.B/C", "-d", "{}"], 2, P + "address 'nowhere' is not host:port\n"),
        (
            ["call", "127.0.0.1:9", "Echo/Unary", "--idl", "x.txt"],
            2,
            P + "--idl x.txt: expected a .thrift or .proto file\n",
        ),
        (
            ["call", "127.0.0.1:9", "Echo/Nope", "--idl", str(ECHO_PROTO), "-d", "{}"],
            2,
            P + "no method 'Nope' in service Echo (it has: Bidi, ClientStream, ServerStream, Unary)\n",
        ),
        (
            ["call", "127.0.0.1:9", "Echo/Unary", "--idl", str(ECHO_PROTO), "--meta-backward", "-d", "{}"],
            2,
            P + NO_BACKWARD + "\n",
        ),
        (
            [
                "call",
                "127.0.0.1:9",
                "Echo/echo",
                "--idl",
                "idl/echo.thrift",
                "--compression",
                "gzip",
                "-d",
                "{}",
            ],
            2,
            P + "--compression needs a gRPC transport (TTHeader payloads are not compressed)\n",
        ),
    ],
)
def test_bad_usage_exits_2(args: list[str], code: int, err: str) -> None:
    result = run(*args)
    assert (result.code, result.out, result.err) == (code, "", err)


def test_bad_idl_and_unreachable_address(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.thrift"
    bad.write_text("service S { x y z }\n")
    result = run("call", "127.0.0.1:9", "S/x", "--idl", str(bad), "-d", "{}")
    assert result.code == 2 and result.err.startswith("kitex-grpc call: cannot load the Thrift IDL: ")
    assert len(result.err.splitlines()) == 1
    result = run("call", "127.0.0.1:9", "Echo/Unary", "--idl", str(ECHO_PROTO), "-d", "{}")
    assert result.code == 1 and result.err.startswith("kitex-grpc call: RPC failed: get connection error")
    assert len(result.err.splitlines()) == 1
    result = run("list", "127.0.0.1:9")
    assert result.code == 1 and result.err.startswith("kitex-grpc list: ")


def test_input_files_and_method_symbols(servers: Servers, tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text('{\n  "message": "from a file"\n}\n')
    result = run("call", servers.pb, "echo.v1.Echo/Unary", "-f", str(one), "--format", "jsonl")
    assert (result.code, result.out) == (0, '{"message":"from a file"}\n')
    many = tmp_path / "many.jsonl"
    many.write_text('{"message": "x"}\n{"message": "y"}\n')
    result = run("call", servers.pb, "echo.v1.Echo/ClientStream", "-f", str(many), "--format", "jsonl")
    assert (result.code, result.out) == (0, '{"message":"x,y","seq":2}\n')
    result = run(
        "call", servers.pb, "echo.v1.Echo/Unary", "-f", "-", "--format", "jsonl", stdin='{"message": "in"}'
    )
    assert (result.code, result.out) == (0, '{"message":"in"}\n')
    result = run("call", servers.pb, "echo.v1.Echo/Unary", "-f", str(tmp_path / "missing.json"))
    assert (result.code, result.out) == (2, "")
    assert result.err == f"kitex-grpc call: -f {tmp_path / 'missing.json'}: No such file or directory\n"
    result = run("describe", servers.pb, "echo.v1.Echo.Bidi")
    assert result.code == 0, result.err
    assert result.out == (
        "echo.v1.Echo.Bidi is a method:\n"
        "rpc Bidi(stream .echo.v1.EchoRequest) returns (stream .echo.v1.EchoReply);\n"
    )


def test_a_stream_that_ends_first_does_not_wait_for_stdin(servers: Servers) -> None:
    # the server fails the bidi stream on the first message while stdin stays open (a terminal)
    cmd = [*command(), "call", servers.pb, "echo.v1.Echo/Bidi", "--format", "jsonl"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env()
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b'{"message": "error:gone"}\n')
        proc.stdin.flush()
        code = proc.wait(15)  # stdin still open: the command must not wait for it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 1
    assert proc.stderr is not None and proc.stderr.read().decode().startswith("kitex-grpc call: RPC failed: ")
