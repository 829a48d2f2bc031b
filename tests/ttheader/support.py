"""Shared parts of the TTHeader tests: the Thrift Echo IDL, a handler with the interop conventions,
and helpers to run servers and raw sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import client, metainfo, rpcinfo, server, thrift
from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.errors import BizStatusError
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder, encode
from tests.support import NOT_ABOUT_DIALING

ROOT = Path(__file__).resolve().parents[2]
echo_thrift: Any = thrift.load(ROOT / "idl" / "echo.thrift")
ECHO_INFO = thrift.service_info(echo_thrift.Echo)
Req = echo_thrift.EchoRequest
Reply = echo_thrift.EchoReply


class ThriftEcho:
    """Keyed on ``req.message`` like the Go server in interop/ (interop/README.md)."""

    def __init__(self) -> None:
        self.last_notify = ""
        self.notified = asyncio.Event()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.deadlines: list[float | None] = []
        self.callers: list[tuple[str, str]] = []

    async def echo(self, req: Any) -> Any:
        msg = req.message or ""
        ri = rpcinfo.current()
        assert ri is not None
        self.deadlines.append(ri.time_remaining())
        self.callers.append((ri.caller.service_name, ri.caller.method))
        if msg.startswith("sleep:"):
            await asyncio.sleep(int(msg[len("sleep:") :]) / 1000)
        elif msg.startswith("biz:"):
            _, code, text = msg.split(":", 2)
            raise BizStatusError(int(code), text, {"k": "v"})
        elif msg.startswith("error:"):
            raise RuntimeError(msg[len("error:") :])
        elif msg == "gate":
            self.entered.set()
            await self.release.wait()
        elif msg == "last-notify":
            return Reply(message=self.last_notify, seq=0)
        elif msg == "meta":
            remaining = ri.time_remaining()
            metainfo.send_backward_value("backward-key", "backward-value")
            info = {
                "deadline_ms": -1 if remaining is None else int(remaining * 1000),
                "persistent": metainfo.get_all_persistent_values(),
                "transient": metainfo.get_all_values(),
            }
            return Reply(message=json.dumps(info, sort_keys=True))
        return Reply(message=msg, payload=req.payload, seq=req.seq)

    async def notify(self, req: Any) -> None:
        self.last_notify = req.message
        self.notified.set()

    async def fail(self, req: Any) -> Any:
        raise echo_thrift.EchoError(code=req.seq, message=req.message)


@asynccontextmanager
async def serve(
    *opts: server.ServerOption, handler: ThriftEcho | None = None
) -> AsyncIterator[tuple[kitex_grpc.Server, ThriftEcho]]:
    """The Thrift Echo on a free 127.0.0.1 port, TTHeader family transport (detects every framing)."""
    service = handler or ThriftEcho()
    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol("ttheader"), *opts
    )
    svr.register_service(ECHO_INFO, service)
    await svr.start()
    try:
        yield svr, service
    finally:
        await svr.stop()


@asynccontextmanager
async def connect(
    address: str, transport: str = "ttheader", *opts: client.ClientOption
) -> AsyncIterator[thrift.ThriftClient]:
    cli = thrift.new_client(
        echo_thrift.Echo,
        "echo",
        client.with_host_ports(address),
        client.with_transport_protocol(transport),
        NOT_ABOUT_DIALING,
        *opts,
    )
    try:
        yield cli
    finally:
        await cli.close()


async def open_raw(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, _, port = address.rpartition(":")
    return await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)


async def read_to_eof(reader: asyncio.StreamReader, seconds: float = 5.0) -> bytes:
    """Everything the peer sends until it closes (fails the test after ``seconds``)."""
    return await asyncio.wait_for(reader.read(), seconds)


async def read_frame(reader: asyncio.StreamReader, seconds: float = 5.0) -> bytes:
    """One length-prefixed frame (TTHeader or Framed), length included."""
    head = await asyncio.wait_for(reader.readexactly(4), seconds)
    (length,) = struct.unpack(">I", head)
    return head + await asyncio.wait_for(reader.readexactly(length), seconds)


class WatchedConnections(set[Any]):
    """A server transport's ``connections`` set that wakes waiters whenever it changes."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)
        self.changed = asyncio.Event()

    def add(self, item: Any) -> None:
        super().add(item)
        self.changed.set()

    def discard(self, item: Any) -> None:
        super().discard(item)
        self.changed.set()

    async def until(self, predicate: Callable[[int], bool], seconds: float = 5.0) -> None:
        """Wait until ``predicate(number of connections)`` holds (fails the test after ``seconds``)."""
        async with asyncio.timeout(seconds):
            while not predicate(len(self)):
                self.changed.clear()
                await self.changed.wait()


def watch_connections(svr: kitex_grpc.Server) -> WatchedConnections:
    """Track the connections a started TTHeader server holds (its transport's ``connections``)."""
    transport: Any = svr._transport
    watched = WatchedConnections(transport.connections)
    transport.connections = watched
    return watched


@asynccontextmanager
async def scripted(
    script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw server running ``script`` per connection; yields its address and a connection counter."""
    count = [0]

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count[0] += 1
        try:
            await script(reader, writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{srv.sockets[0].getsockname()[1]}", count
    finally:
        srv.close()


def reply_bytes(request: bytes, *, name: str | None = None, seq_delta: int = 0, **info: str) -> bytes:
    [msg] = MessageDecoder(Framing.TTHEADER, 1 << 20).receive_data(request)
    result = echo_thrift.Echo.echo_result(success=echo_thrift.EchoReply(message="r"))
    body = ECHO_INFO.methods["echo"].serialize_response(result)
    return encode(msg.framing, THRIFT, name or msg.method, 2, msg.seq_id + seq_delta, body, info, {22: "2"})


async def answer_each(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: list[bytes] | None = None, **info: str
) -> None:
    """A scripted peer's loop: answer every request frame with :func:`reply_bytes` until EOF."""
    while True:
        try:
            frame = await read_frame(reader)
        except asyncio.IncompleteReadError:
            return
        if record is not None:
            record.append(frame)
        writer.write(reply_bytes(frame, **info))
