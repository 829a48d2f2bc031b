"""``kitex-grpc list``, ``describe`` and ``health``: gRPC reflection (v1, then v1alpha) and health."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from kitex_grpc.cli import EXIT_OK, EXIT_RPC, EXIT_USAGE
from kitex_grpc.cli.common import UsageError, client_options, fail, protocol
from kitex_grpc.errors import KitexError

__all__ = ["run_describe", "run_health", "run_list"]


def _run(command: str, args: argparse.Namespace, body: Any) -> int:
    try:
        if not protocol(args.transport).is_grpc:
            raise UsageError(f"{command} needs a gRPC transport (grpc or grpc-h2)")
        opts = client_options(args, args.transport)
        return int(asyncio.run(body(args, opts)))
    except UsageError as exc:
        fail(command, str(exc))
        return EXIT_USAGE
    except KitexError as exc:
        fail(command, f"RPC failed: {exc}")
        return EXIT_RPC
    except KeyboardInterrupt:
        return 130


def _reflection_error() -> type[Exception]:
    from kitex_grpc.generic.reflection import ReflectionError

    return ReflectionError


def run_list(args: argparse.Namespace) -> int:
    return _run("list", args, _list)


async def _list(args: argparse.Namespace, opts: list[Any]) -> int:
    from kitex_grpc.generic.reflection import ReflectionSession

    try:
        async with ReflectionSession(args.addr, *opts[1:]) as session:
            for name in await session.list_services():
                print(name)
    except _reflection_error() as exc:
        fail("list", str(exc))
        return EXIT_RPC
    return EXIT_OK


def run_describe(args: argparse.Namespace) -> int:
    return _run("describe", args, _describe)


async def _describe(args: argparse.Namespace, opts: list[Any]) -> int:
    from kitex_grpc.generic.reflection import ReflectionSession

    symbol: str = args.symbol.lstrip(".")
    try:
        async with ReflectionSession(args.addr, *opts[1:]) as session:
            try:
                files = await session.files_for(symbol)
            except _reflection_error():
                # A method's name is not a symbol every server resolves: ask for its service's file.
                parent = symbol.rpartition(".")[0]
                if not parent:
                    raise
                files = await session.files_for(parent)
    except _reflection_error() as exc:
        fail("describe", f"{symbol}: {exc}")
        return EXIT_RPC
    from kitex_grpc.generic.codecs import module_from_files

    pool = module_from_files(files)._pool
    text = describe_symbol(pool, symbol)
    if text is None:
        fail("describe", f"{symbol}: not a service, method, message or enum")
        return EXIT_RPC
    print(text)
    return EXIT_OK


def describe_symbol(pool: Any, symbol: str) -> str | None:
    """``symbol`` in .proto syntax: a service, a method, a message or an enum."""
    finders = (
        (pool.FindServiceByName, _service),
        (pool.FindMessageTypeByName, _message),
        (pool.FindEnumTypeByName, _enum),
        (pool.FindMethodByName, _method),
    )
    for find, render in finders:
        try:
            found = find(symbol)
        except KeyError:
            continue
        return f"{symbol} is a {render.__name__.lstrip('_')}:\n{render(found)}"
    return None


def _method(m: Any, indent: str = "") -> str:
    cs = "stream " if m.client_streaming else ""
    ss = "stream " if m.server_streaming else ""
    return f"{indent}rpc {m.name}({cs}.{m.input_type.full_name}) returns ({ss}.{m.output_type.full_name});"


def _service(s: Any) -> str:
    lines = [f"service {s.name} {{", *(_method(m, "  ") for m in s.methods), "}"]
    return "\n".join(lines)


_TYPE_NAMES = {
    1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32",
    8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64",
    17: "sint32", 18: "sint64",
}  # fmt: skip


def _field_type(f: Any) -> str:
    if f.message_type is not None:
        if f.message_type.GetOptions().map_entry:
            k, v = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            return f"map<{_field_type(k)}, {_field_type(v)}>"
        return f".{f.message_type.full_name}"
    if f.enum_type is not None:
        return f".{f.enum_type.full_name}"
    return _TYPE_NAMES.get(f.type, f"type{f.type}")


def _message(d: Any) -> str:
    lines = [f"message {d.name} {{"]
    for f in d.fields:
        repeated = getattr(f, "is_repeated", None)
        if repeated is None:
            repeated = f.label == 3
        is_map = f.message_type is not None and f.message_type.GetOptions().map_entry
        label = "repeated " if repeated and not is_map else ""
        lines.append(f"  {label}{_field_type(f)} {f.name} = {f.number};")
    lines.append("}")
    return "\n".join(lines)


def _enum(e: Any) -> str:
    return "\n".join([f"enum {e.name} {{", *(f"  {v.name} = {v.number};" for v in e.values), "}"])


def run_health(args: argparse.Namespace) -> int:
    return _run("health", args, _health)


async def _health(args: argparse.Namespace, opts: list[Any]) -> int:
    from kitex_grpc.client import new_client
    from kitex_grpc.health import HEALTH_SERVICE_INFO
    from kitex_grpc.health._proto import HealthCheckRequest, HealthCheckResponse

    if args.timeout is not None:
        from kitex_grpc import client

        opts.append(client.with_rpc_timeout(args.timeout))
    async with new_client(HEALTH_SERVICE_INFO, "health", *opts) as cli:
        reply = await cli.call("Check", HealthCheckRequest(service=args.service))
    status = HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return EXIT_OK if status == "SERVING" else EXIT_RPC
