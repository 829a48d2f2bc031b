"""The ``kitex-grpc`` command line: ``gen``, ``call``, ``list``, ``describe``, ``health``, ``serve``.

Each subcommand imports what it needs only when it runs, so ``kitex-grpc --help`` starts fast.

Exit codes (every subcommand): 0 success; 1 the RPC failed (a status, a biz error, an IDL
exception, an unreachable address; the reason on stderr); 2 bad usage or bad input (the bad field's
path on stderr; nothing was sent).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_RPC = 1
EXIT_USAGE = 2

TRANSPORTS = (
    "grpc",
    "grpc-h2",
    "ttheader",
    "ttheader-framed",
    "framed",
    "kitex-protobuf",
    "ttheader-streaming",
)

_CALL_EPILOG = """\
input: -d JSON, or -f FILE ("-" for stdin), or stdin when neither is given. Unary and server-streaming
methods take one JSON value; client and bidi streams take one JSON value per line (replies are printed
as they arrive).

exit codes: 0 ok, 1 RPC failed (status, biz error, IDL exception or unreachable address shown on
stderr), 2 bad usage or bad input (nothing sent).

examples:
  kitex-grpc call 127.0.0.1:8888 echo.v1.Echo/Unary -d '{"message": "hi"}'          # reflection
  kitex-grpc call 127.0.0.1:8888 Echo/Unary --idl protos/echo/v1/echo.proto -d '{"message": "hi"}'
  kitex-grpc call 127.0.0.1:8888 Echo/echo --idl idl/echo.thrift --transport ttheader -d '{"message": "hi"}'
  printf '{"message":"a"}\\n{"message":"b"}\\n' | kitex-grpc call 127.0.0.1:8888 echo.v1.Echo/Bidi
"""


def _common(p: argparse.ArgumentParser, default_transport: str | None) -> None:
    p.add_argument("addr", help="host:port of the server")
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=default_transport,
        help="wire protocol (call: grpc-h2 for .proto and reflection, ttheader for .thrift; others: grpc-h2)",
    )
    p.add_argument("--tls", action="store_true", help="use TLS (gRPC transports)")
    p.add_argument("--cacert", metavar="PEM", help="CA certificates to verify the server (implies --tls)")
    p.add_argument("--servername", metavar="NAME", help="TLS server name to verify (default: the host)")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="dial timeout (default 2 s; Kitex's 50 ms is too tight for a command line)",
    )
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="RPC timeout (default: none, as Kitex)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kitex-grpc", description="kitex-grpc tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = commands.add_parser("gen", help="generate typed Python code from .proto files")
    gen.add_argument("protos", nargs="+", help=".proto files")
    gen.add_argument("-o", "--out", required=True, help="output directory (a Python package root)")
    gen.add_argument(
        "-I",
        "--proto-path",
        action="append",
        default=[],
        help="include root (repeatable); default: inferred from each file's package",
    )

    call = commands.add_parser(
        "call",
        help="call a method of any Kitex or gRPC service with JSON",
        epilog=_CALL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(call, None)
    call.add_argument("method", metavar="Service/Method", help="e.g. echo.v1.Echo/Unary or Echo/echo")
    source = call.add_mutually_exclusive_group()
    source.add_argument("-d", "--data", help="the request as JSON (streams: one value per line)")
    source.add_argument("-f", "--file", help="read the request(s) from FILE ('-' for stdin)")
    call.add_argument("--idl", help=".thrift or .proto file (default: the server's gRPC reflection)")
    call.add_argument(
        "-I", "--include", action="append", default=[], help="IDL include directory (repeatable)"
    )
    call.add_argument("--meta", action="append", default=[], metavar="K=V", help="transient metainfo")
    call.add_argument(
        "--meta-persistent", action="append", default=[], metavar="K=V", help="persistent metainfo"
    )
    call.add_argument(
        "--meta-backward", action="store_true", help="print the backward metainfo the server sends (TTHeader)"
    )
    call.add_argument(
        "-H", "--header", action="append", default=[], metavar="KEY:VALUE", help="gRPC metadata (repeatable)"
    )
    call.add_argument("--compression", choices=("gzip",), help="compress requests (gRPC transports)")
    call.add_argument(
        "--format",
        choices=("json", "jsonl", "raw"),
        default="json",
        help="json: indented; jsonl: one compact line per reply; raw: the reply message's bytes",
    )
    call.add_argument("--i64-as-string", action="store_true", help="print 64-bit integers as strings")
    call.add_argument("-v", "--verbose", action="store_true", help="print response headers and trailers")

    lst = commands.add_parser("list", help="list the services of a server (gRPC reflection)")
    _common(lst, "grpc-h2")
    describe = commands.add_parser("describe", help="describe a service, method or message (reflection)")
    _common(describe, "grpc-h2")
    describe.add_argument("symbol", help="full name, e.g. echo.v1.Echo or echo.v1.EchoRequest")
    health = commands.add_parser("health", help="check grpc.health.v1 (exit 0 when SERVING)")
    _common(health, "grpc-h2")
    health.add_argument("service", nargs="?", default="", help="service name (default: the server)")
    from kitex_grpc.cli.serve import add_parser

    add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "gen":
        return _gen(args)
    if args.command == "serve":
        from kitex_grpc.cli import serve

        return serve.run(args)
    if args.command == "call":
        from kitex_grpc.cli.call import run

        return run(args)
    from kitex_grpc.cli.reflect import run_describe, run_health, run_list

    if args.command == "list":
        return run_list(args)
    if args.command == "describe":
        return run_describe(args)
    return run_health(args)


def _gen(args: argparse.Namespace) -> int:
    from kitex_grpc.codegen import CodegenError, generate

    try:
        written = generate(args.protos, args.out, args.proto_path)
    except CodegenError as exc:
        print(f"kitex-grpc gen: {exc}", file=sys.stderr)
        return 1
    for item in written:
        print(f"{item.proto}: {item.pb2_module} {item.kitex_module}")
    return 0
