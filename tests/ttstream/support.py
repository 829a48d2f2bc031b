"""The ttstream test service: Thrift structs, the four stream kinds, behaviour keyed on the message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import TransportProtocol, client, metainfo, rpcinfo, server, thrift
from kitex_grpc.errors import BizStatusError, CanceledError
from kitex_grpc.serviceinfo import ServiceInfo
from tests.support import NOT_ABOUT_DIALING

ROOT = Path(__file__).resolve().parents[2]
idl = thrift.load(ROOT / "idl" / "stream.thrift", "ttstream_test_thrift")
Request = idl.StreamRequest
Response = idl.StreamReply
StreamError = idl.StreamError


def service_info() -> ServiceInfo:
    return thrift.service_info(idl.StreamService)


class Handler:
    """The handler of idl/stream.thrift's StreamService; behaviour keyed on the message:

    - ``biz:<code>:<msg>``: BizStatusError with extra {"k": "v"}; ``error:<msg>``: RuntimeError;
    - ``idl-exception``: StreamError(3, "declared");
    - ``block``: wait until cancelled (``entered`` / ``cancelled`` are set);
    - ``stop``: end a bidi stream at once; ``meta``: reply with the received metainfo.
    """

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.deadline: float | None = None

    async def behave(self, req: Any) -> Any:
        msg = req.message
        if msg.startswith("biz:"):
            _, code, text = msg.split(":", 2)
            raise BizStatusError(int(code), text, {"k": "v"})
        if msg.startswith("error:"):
            raise RuntimeError(msg[len("error:") :])
        if msg == "idl-exception":
            raise StreamError(code=3, message="declared")
        if msg == "block":
            self.entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if msg == "trailer":  # a trailer pair for the end of the stream
            ri = rpcinfo.current()
            assert ri is not None
            ri.response_metadata.append(("x-cost", "3"))
        if msg == "meta":
            ri = rpcinfo.current()
            assert ri is not None
            info = {
                "transient": metainfo.get_all_values(),
                "persistent": metainfo.get_all_persistent_values(),
                "deadline": ri.deadline is not None,
            }
            return Response(message=json.dumps(info, sort_keys=True), seq=req.seq)
        return Response(message=msg, seq=req.seq, payload=req.payload)

    async def EchoBidi(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for r in requests:
                if r.message == "stop":  # end the stream before the client half-closes
                    return
                yield await self.behave(r)
        except CanceledError:  # the client's Rst arrived while the handler waited for a request
            self.cancelled.set()
            raise

    async def EchoServer(self, request: Any) -> AsyncIterator[Any]:
        for i in range(request.count):
            yield Response(message=request.message, seq=i)
        if request.message != "ok":
            await self.behave(request)

    async def EchoClient(self, requests: AsyncIterator[Any]) -> Any:
        got = []
        async for r in requests:
            if r.message.startswith(("biz:", "error:", "block")):
                await self.behave(r)
            got.append(r.message)
        return Response(message=",".join(got), seq=len(got))

    async def Echo(self, request: Any) -> Any:
        return await self.behave(request)

    async def EchoUnary(self, request: Any) -> Any:
        return await self.behave(request)


@asynccontextmanager
async def serve(
    *opts: server.ServerOption, handler: Handler | None = None
) -> AsyncIterator[tuple[kitex_grpc.Server, Handler]]:
    handler = handler or Handler()
    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(TransportProtocol.TTHEADER_STREAMING),
        *opts,
    )
    svr.register_service(service_info(), handler)
    await svr.start()
    try:
        yield svr, handler
    finally:
        await svr.stop()


@asynccontextmanager
async def connect(
    address: str, *opts: client.ClientOption, info: ServiceInfo | None = None
) -> AsyncIterator[Any]:
    cli = thrift.new_client(
        info or service_info(),
        "echo",
        client.with_host_ports(address),
        client.with_transport_protocol(TransportProtocol.TTHEADER_STREAMING),
        NOT_ABOUT_DIALING,  # the unary calls go over TTHeader, whose connect timeout is 50 ms
        *opts,
    )
    try:
        yield cli
    finally:
        await cli.close()
