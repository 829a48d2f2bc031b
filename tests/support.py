"""Shared test parts: the Echo test service, and helpers to run it on a real loopback port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import kitex_grpc
from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client, metainfo, rpcinfo, server
from kitex_grpc.errors import BizStatusError

Req = echo_pb2.EchoRequest
Reply = echo_pb2.EchoReply

# For clients in tests that are not about dialing: a loaded CI machine can starve the event loop past
# Kitex's 50 ms default connect timeout (for h2, until the server's SETTINGS arrive; for grpcio, until
# the channel is ready) before the dial itself is slow. Tests of the connect timeout set their own.
NOT_ABOUT_DIALING = client.with_connect_timeout(5)


class EchoService(echo_kitex.EchoHandler):
    """Behaviour keyed on ``request.message`` (the same conventions as the Go server in interop/):

    - ``biz:<code>:<msg>``: BizStatusError with extra {"k": "v"}
    - ``error:<msg>``: a plain RuntimeError
    - ``block``: wait until cancelled; ``entered`` is set on entry, ``cancelled`` on cancellation
    - ``gate``: wait for ``release`` (set by the test), then echo
    - ``meta``: reply.message = JSON of the metainfo and metadata received
    - anything else: echo message, payload, seq
    """

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0
        self.finished = 0
        self._arrivals = asyncio.Condition()

    async def arrived(self, count: int, seconds: float = 5.0) -> None:
        """Wait until ``count`` unary calls have reached the handler."""
        async with asyncio.timeout(seconds), self._arrivals:
            await self._arrivals.wait_for(lambda: self.calls >= count)

    async def _behave(self, req: Req) -> Reply:
        msg = req.message
        if msg.startswith("biz:"):
            _, code, text = msg.split(":", 2)
            raise BizStatusError(int(code), text, {"k": "v"})
        if msg.startswith("error:"):
            raise RuntimeError(msg[len("error:") :])
        if msg == "block":
            self.entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if msg == "gate":
            self.entered.set()
            await self.release.wait()
        if msg == "meta":
            ri = rpcinfo.current()
            assert ri is not None
            metainfo.send_backward_value("backward-key", "backward-value")
            info = {
                "transient": metainfo.get_all_values(),
                "persistent": metainfo.get_all_persistent_values(),
                "metadata": {k: v for k, v in ri.metadata if isinstance(v, str) and k.startswith("x-")},
                "deadline": ri.deadline is not None,
            }
            return Reply(message=json.dumps(info, sort_keys=True), seq=req.seq)
        return Reply(message=msg, payload=req.payload, seq=req.seq)

    async def Unary(self, request: Req) -> Reply:
        self.calls += 1
        async with self._arrivals:
            self._arrivals.notify_all()
        try:
            return await self._behave(request)
        finally:
            self.finished += 1

    async def ServerStream(self, request: Req) -> AsyncIterator[Reply]:
        count = request.seq or 3
        for i in range(count):
            if i == 1 and request.message.startswith(("biz:", "error:", "block")):
                await self._behave(request)
            yield Reply(message=request.message, seq=i)

    async def ClientStream(self, requests: AsyncIterator[Req]) -> Reply:
        got = []
        async for r in requests:
            if r.message.startswith(("biz:", "error:", "block")):
                await self._behave(r)
            got.append(r.message)
        return Reply(message=",".join(got), seq=len(got))

    async def Bidi(self, requests: AsyncIterator[Req]) -> AsyncIterator[Reply]:
        async for r in requests:
            yield await self._behave(r)


@asynccontextmanager
async def serve(
    *opts: server.ServerOption, handler: EchoService | None = None
) -> AsyncIterator[tuple[kitex_grpc.Server, EchoService]]:
    """Run the Echo service on a free 127.0.0.1 port for the duration of the block."""
    service = handler or EchoService()
    svr = echo_kitex.new_server(service, server.with_service_addr("127.0.0.1:0"), *opts)
    await svr.start()
    try:
        yield svr, service
    finally:
        await svr.stop()


@asynccontextmanager
async def connect(svr: kitex_grpc.Server, *opts: client.ClientOption) -> AsyncIterator[echo_kitex.EchoClient]:
    cli = echo_kitex.new_client("echo", client.with_host_ports(svr.address), NOT_ABOUT_DIALING, *opts)
    try:
        yield cli
    finally:
        await cli.close()


async def wait_for(event: asyncio.Event, seconds: float = 5.0) -> None:
    """Wait for ``event``, failing the test after ``seconds`` instead of hanging."""
    await asyncio.wait_for(event.wait(), seconds)
