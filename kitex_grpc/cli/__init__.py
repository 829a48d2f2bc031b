"""The ``kitex-grpc`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kitex-grpc", description="kitex-grpc tools")
    commands = parser.add_subparsers(dest="command", required=True)
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
    args = parser.parse_args(argv)
    if args.command == "gen":
        from kitex_grpc.codegen import CodegenError, generate

        try:
            written = generate(args.protos, args.out, args.proto_path)
        except CodegenError as exc:
            print(f"kitex-grpc gen: {exc}", file=sys.stderr)
            return 1
        for item in written:
            print(f"{item.proto}: {item.pb2_module} {item.kitex_module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
