"""``kitex-grpc call``: one generic call (or stream) with JSON in and out.

Everything that can be checked before sending is checked first (the address, the method, the IDL,
every request of ``-d``/``-f``), so bad input exits 2 with nothing sent. Requests read from stdin
for a client or bidi stream are checked line by line as they are read; a bad one cancels the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from kitex_grpc import callopt, client, metainfo
from kitex_grpc.cli import EXIT_OK, EXIT_RPC, EXIT_USAGE
from kitex_grpc.cli.common import UsageError, client_options, fail, protocol
from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import BizStatusError, KitexError
from kitex_grpc.generic import ConvertError, Generic, IDLError, IDLExceptionError, new_client
from kitex_grpc.generic.codecs import ThriftGeneric, json_pb, json_thrift
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.serviceinfo import MethodInfo, StreamingMode
from kitex_grpc.transport_protocol import TransportProtocol

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Run ``call``; returns the exit code."""
    try:
        return asyncio.run(_call(args))
    except (UsageError, ConvertError, IDLError) as exc:
        fail("call", str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _pairs(items: list[str], sep: str, flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise UsageError(f"{flag} {item!r}: expected KEY{sep}VALUE")
        out.append((key.strip(), value.strip() if sep == ":" else value))
    return out


def _generic(args: argparse.Namespace, service: str) -> tuple[Generic | None, str]:
    """The generic of ``--idl`` (or None: reflection) and the default transport for it."""
    short = service.rpartition(".")[2]
    if args.idl is None:
        return None, "grpc-h2"
    idl = str(args.idl)
    if idl.endswith(".thrift"):
        return json_thrift(idl, include_dirs=args.include, service=short, i64_as_string=args.i64_as_string), (
            "ttheader"
        )
    if idl.endswith(".proto"):
        if not Path(idl).is_file():
            raise UsageError(f"--idl {idl}: no such file")
        from kitex_grpc.codegen import CodegenError

        try:
            g = json_pb(idl, service=short, include=args.include, int64_as_string=args.i64_as_string)
        except CodegenError as exc:
            raise IDLError(f"cannot load the protobuf IDL: {exc}") from None
        if service != short and g.service_info.full_name != service:
            raise UsageError(f"--idl {idl} defines {g.service_info.full_name}, not {service}")
        return g, "grpc-h2"
    raise UsageError(f"--idl {idl}: expected a .thrift or .proto file")


class _Input:
    """The request text(s): ``-d``, ``-f`` or stdin."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.text: str | None = None
        self.from_stdin = False
        if args.data is not None:
            self.text = args.data
        elif args.file is not None and args.file != "-":
            try:
                self.text = Path(args.file).read_text()
            except OSError as exc:
                raise UsageError(f"-f {args.file}: {exc.strerror or exc}") from None
        else:
            self.from_stdin = True

    def whole(self) -> str:
        return sys.stdin.read() if self.text is None else self.text

    def lines(self) -> Iterator[tuple[int, str]]:
        assert self.text is not None
        for number, line in enumerate(self.text.splitlines(), 1):
            if line.strip():
                yield number, line

    async def stdin_lines(self) -> AsyncIterator[tuple[int, str]]:
        # A daemon thread reads stdin: when the stream ends first (the server finished or failed), the
        # command exits at once instead of waiting for a line or EOF that a terminal may never send.
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str] = asyncio.Queue()

        def read() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, "")

        threading.Thread(target=read, name="kitex-grpc-stdin", daemon=True).start()
        number = 0
        while True:
            line = await lines.get()
            if not line:
                return
            number += 1
            if line.strip():
                yield number, line


class _Printer:
    def __init__(self, args: argparse.Namespace, g: Generic, mi: MethodInfo) -> None:
        self.format = args.format
        self.g = g
        self.mi = mi

    def reply(self, typed: Any) -> None:
        if self.format == "raw":
            if isinstance(self.g, ThriftGeneric):
                result = self.mi.response_type()
                if 0 in self.mi.response_type.thrift_spec:
                    result.success = typed
                typed = result
            sys.stdout.buffer.write(self.mi.serialize_response(typed))
            sys.stdout.buffer.flush()
            return
        text = self.g.decode_reply(self.mi, typed)
        if text is None:
            return
        if self.format == "json":
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        print(text, flush=True)


def _verbose(ri: RPCInfo | None) -> None:
    if ri is None:
        return
    path = ri.service.grpc_path(ri.method.name) if ri.method.name in ri.service.methods else ri.method.name
    peer = ri.callee.address or "?"
    print(f"* {path} over {ri.config.transport_protocol.value} to {peer}", file=sys.stderr)
    for key, value in ri.response_metadata:
        shown = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        print(f"< {key}: {shown}", file=sys.stderr)


async def _call(args: argparse.Namespace) -> int:
    service, sep, method = args.method.rpartition("/")
    if not sep or not service or not method or "/" in service:
        raise UsageError(f"method {args.method!r}: expected Service/Method")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout must be > 0")
    meta = _pairs(args.meta, "=", "--meta")
    persistent = _pairs(args.meta_persistent, "=", "--meta-persistent")
    headers = _pairs(args.header, ":", "-H")
    g, default_transport = _generic(args, service)
    transport = args.transport or default_transport
    proto = protocol(transport)
    if args.meta_backward and proto.is_grpc:
        raise UsageError(
            "--meta-backward needs a TTHeader transport (Kitex's gRPC carries no backward values)"
        )
    if args.compression and not proto.is_grpc:
        raise UsageError("--compression needs a gRPC transport (TTHeader payloads are not compressed)")
    if headers and not proto.is_grpc:
        raise UsageError("-H needs a gRPC transport; use --meta for TTHeader")
    if transport == "kitex-protobuf" and isinstance(g, ThriftGeneric):
        raise UsageError("--transport kitex-protobuf needs a .proto IDL")
    opts = client_options(args, transport)
    if args.compression:
        opts.append(client.with_compression(args.compression))
    callopts = [callopt.with_metadata(k.lower(), _header_value(k, v)) for k, v in headers]
    data = _Input(args)
    if g is None:
        if not proto.is_grpc:
            raise UsageError("without --idl the method is looked up by gRPC reflection: use a gRPC transport")
        g = await _from_reflection(args, service, opts)
        if g is None:
            return EXIT_RPC
    mi = g.method(method)
    if mi.mode.is_streaming and not (proto.is_grpc or proto is TransportProtocol.TTHEADER_STREAMING):
        raise UsageError(
            f"{method} is a {mi.mode.value} stream: streams need a gRPC transport or ttheader-streaming"
        )
    captured: list[RPCInfo] = []

    def capture(next_endpoint: Endpoint) -> Endpoint:
        async def endpoint(ri: RPCInfo, request: Any) -> Any:
            captured.append(ri)
            return await next_endpoint(ri, request)

        return endpoint

    opts.append(client.with_middleware(capture))
    if args.timeout is not None:
        if mi.mode.is_streaming:
            callopts.append(callopt.with_rpc_timeout(args.timeout))
        else:
            opts.append(client.with_rpc_timeout(args.timeout))
    printer = _Printer(args, g, mi)
    cli = new_client(g, service, *opts)
    with contextlib.ExitStack() as scope:
        for key, value in meta:
            scope.enter_context(metainfo.with_value(key, value))
        for key, value in persistent:
            scope.enter_context(metainfo.with_persistent_value(key, value))
        backward = scope.enter_context(metainfo.with_backward_values()) if args.meta_backward else None
        try:
            code = await _dispatch(cli, g, mi, data, printer, callopts)
        except BizStatusError as exc:
            fail("call", f"biz error: code={exc.code} message={exc.message}")
            if exc.extra:
                print(f"extra: {json.dumps(exc.extra, ensure_ascii=False)}", file=sys.stderr)
            code = EXIT_RPC
        except IDLExceptionError as exc:
            fail("call", f"IDL exception {exc.type_name} ({exc.field}): {exc.value}")
            code = EXIT_RPC
        except KitexError as exc:
            fail("call", f"RPC failed: {exc}")
            code = EXIT_RPC
        finally:
            await cli.close()
        if args.verbose:
            _verbose(captured[0] if captured else None)
        if backward is not None:
            print(f"backward metainfo: {json.dumps(backward.received, sort_keys=True)}", file=sys.stderr)
    return code


def _header_value(key: str, value: str) -> str | bytes:
    if key.lower().endswith("-bin"):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise UsageError(f"-H {key}: a -bin value must be base64") from None
    return value


async def _from_reflection(args: argparse.Namespace, service: str, opts: list[Any]) -> Generic | None:
    from kitex_grpc.generic.reflection import ReflectionError, json_pb_from_reflection

    if "." not in service:
        raise UsageError(f"with reflection the service needs its package: e.g. pkg.{service}/Method")
    try:
        return await json_pb_from_reflection(
            args.addr, service, *opts[1:], int64_as_string=args.i64_as_string
        )
    except (ReflectionError, KitexError) as exc:
        fail("call", f"reflection failed: {exc}")
        return None


async def _dispatch(
    cli: Any, g: Generic, mi: MethodInfo, data: _Input, printer: _Printer, callopts: list[Any]
) -> int:
    typed_client = cli.client
    mode = mi.mode
    if not mode.client_streams:
        typed = g.encode_request(mi, data.whole())  # checked before anything is sent
        if mode is StreamingMode.SERVER:
            async for reply in typed_client.server_stream(mi.name, typed, *callopts):
                printer.reply(reply)
            return EXIT_OK
        try:
            reply = await typed_client.call(mi.name, typed, *callopts)
        except Exception as exc:
            declared = g.exception(mi, exc) if isinstance(g, ThriftGeneric) else None
            if declared is None:
                raise
            raise declared from None
        if not mi.oneway:
            printer.reply(reply)
        return EXIT_OK
    requests: list[Any] | None = None
    if not data.from_stdin:
        requests = []
        for number, line in data.lines():
            requests.append(_encode_line(g, mi, number, line))
    if mode is StreamingMode.CLIENT:
        stream = await typed_client.client_stream(mi.name, *callopts)
        try:
            await _send_all(stream, g, mi, data, requests)
        except BaseException:
            stream.cancel()
            raise
        printer.reply(await stream.close_and_recv())
        return EXIT_OK
    stream = await typed_client.bidi_stream(mi.name, *callopts)
    sender = asyncio.ensure_future(_send_all(stream, g, mi, data, requests, close=True))
    try:
        async for reply in stream:
            printer.reply(reply)
    except BaseException:
        # a bad stdin line cancelled the stream: report the line (exit 2), not the cancellation
        failed = sender.exception() if sender.done() and not sender.cancelled() else None
        sender.cancel()
        if failed is not None:
            raise failed from None
        raise
    await sender
    return EXIT_OK


def _encode_line(g: Generic, mi: MethodInfo, number: int, line: str) -> Any:
    try:
        return g.encode_request(mi, line)
    except ConvertError as exc:
        path = f"line {number}" + (f": {exc.path}" if exc.path else "")
        raise ConvertError(path, exc.message) from None


async def _send_all(
    stream: Any, g: Generic, mi: MethodInfo, data: _Input, requests: list[Any] | None, close: bool = False
) -> None:
    try:
        if requests is not None:
            for typed in requests:
                await stream.send(typed)
        else:
            async for number, line in data.stdin_lines():
                await stream.send(_encode_line(g, mi, number, line))
    except ConvertError:
        stream.cancel()
        raise
    if close:
        await stream.close_send()
