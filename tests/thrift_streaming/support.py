"""The Thrift streaming test service (idl/stream.thrift) with the conventions the Go peers in interop/
share (interop/README.md "Thrift streaming"), and a server/client pair on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import client, metainfo, rpcinfo, server, thrift
from kitex_grpc.errors import BizStatusError
from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo
from kitex_grpc.transport_protocol import TransportProtocol
from tests.support import NOT_ABOUT_DIALING

ROOT = Path(__file__).resolve().parents[2]
stream_thrift: Any = thrift.load(ROOT / "idl" / "stream.thrift")
INFO = thrift.service_info(stream_thrift.StreamService)
Req = stream_thrift.StreamRequest
Reply = stream_thrift.StreamReply
StreamError = stream_thrift.StreamError


def with_missing_method() -> ServiceInfo:
    """StreamService plus a bidi method ``Missing`` no server has (for the unknown-method cases)."""
    bidi = INFO.methods["EchoBidi"]
    missing = MethodInfo(
        "Missing",
        bidi.mode,
        Req,
        Reply,
        serialize_request=bidi.serialize_request,
        deserialize_request=bidi.deserialize_request,
        serialize_response=bidi.serialize_response,
        deserialize_response=bidi.deserialize_response,
    )
    return ServiceInfo(INFO.service_name, [*INFO.methods.values(), missing], payload_codec=INFO.payload_codec)


def meta_json() -> str:
    """What ``meta`` answers: the remaining deadline in ms (-1 without one) and the metainfo received."""
    ri = rpcinfo.current()
    remaining = None if ri is None else ri.time_remaining()
    return json.dumps(
        {
            "deadline_ms": -1 if remaining is None else int(remaining * 1000),
            "persistent": metainfo.get_all_persistent_values(),
            "transient": metainfo.get_all_values(),
        },
        sort_keys=True,
    )


def fail_for(message: str) -> BaseException | None:
    """The error a control message asks for: ``biz:<code>:<msg>``, ``error:<msg>`` or
    ``exception:<code>:<msg>`` (a StreamError)."""
    if message.startswith("biz:"):
        _, code, text = message.split(":", 2)
        return BizStatusError(int(code), text, {"k": "v"})
    if message.startswith("error:"):
        return RuntimeError(message[len("error:") :])
    if message.startswith("exception:"):
        _, code, text = message.split(":", 2)
        return StreamError(code=int(code), message=text)
    return None


class StreamHandler:
    """StreamService, keyed on ``message`` like the Go server (interop/cmd/streamserver):

    - ``Echo`` / ``EchoUnary``: echo; ``biz:``/``error:``/``exception:`` fail; ``meta``; ``sleep:<ms>``
    - ``EchoServer``: ``count`` replies (seq 0..count-1, message and payload echoed), then the failure
      the message asks for, or ``block`` (wait until cancelled); ``meta``: one reply with meta_json
    - ``cancelled`` is set when a stream handler is cancelled, wherever it is
    - ``EchoClient``: reply.seq = messages received, reply.message = them joined with ``,``; ``error:``
      fails at once (mid-stream); a last ``biz:``/``exception:`` fails at the end
    - ``EchoBidi``: echo each message; failures at once; ``block``; ``meta``; ``stop`` ends the stream
      from the server side; after the client's half-close one more reply ``eof`` with seq = received
    """

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.received: list[Any] = []

    async def _block(self) -> None:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def Echo(self, req: Any) -> Any:
        msg = req.message or ""
        error = fail_for(msg)
        if error is not None:
            raise error
        if msg == "meta":
            return Reply(message=meta_json())
        if msg.startswith("sleep:"):
            await asyncio.sleep(int(msg[len("sleep:") :]) / 1000)
        return Reply(message=msg, payload=req.payload, seq=req.seq)

    async def EchoUnary(self, req: Any) -> Any:
        return await self.Echo(req)

    async def EchoServer(self, req: Any) -> AsyncIterator[Any]:
        msg = req.message or ""
        if msg == "meta":
            yield Reply(message=meta_json())
            return
        for i in range(req.count or 0):
            yield Reply(message=msg, payload=req.payload, seq=i)
        error = fail_for(msg)
        if error is not None:
            raise error
        if msg == "block":
            await self._block()

    async def EchoClient(self, requests: AsyncIterator[Any]) -> Any:
        try:
            return await self._client(requests)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def _client(self, requests: AsyncIterator[Any]) -> Any:
        messages: list[str] = []
        async for req in requests:
            self.received.append(req)
            messages.append(req.message or "")
            if messages[-1].startswith("error:"):
                error = fail_for(messages[-1])
                assert error is not None
                raise error
            if messages[-1] == "block":
                await self._block()
        error = fail_for(messages[-1]) if messages else None
        if error is not None:
            raise error
        return Reply(message=",".join(messages), seq=len(messages))

    async def EchoBidi(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        count = 0
        try:
            async for req in requests:
                self.received.append(req)
                count += 1
                msg = req.message or ""
                error = fail_for(msg)
                if error is not None:
                    raise error
                if msg == "block":
                    await self._block()
                if msg == "stop":
                    return
                yield (
                    Reply(message=meta_json())
                    if msg == "meta"
                    else Reply(message=msg, payload=req.payload, seq=req.seq)
                )
        except asyncio.CancelledError:  # wherever the cancel finds the handler
            self.cancelled.set()
            raise
        yield Reply(message="eof", seq=count)


@asynccontextmanager
async def serving(
    protocol: TransportProtocol,
    *opts: server.ServerOption,
    handler: StreamHandler | None = None,
    info: ServiceInfo = INFO,
) -> AsyncIterator[tuple[kitex_grpc.Server, StreamHandler]]:
    """StreamService (or ``info``, e.g. with a method left out) on a free 127.0.0.1 port over ``protocol``."""
    handler = handler or StreamHandler()
    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(protocol), *opts
    )
    svr.register_service(info, handler)
    await svr.start()
    try:
        yield svr, handler
    finally:
        await svr.stop()


def new_client(
    address: str, protocol: TransportProtocol, *opts: client.ClientOption, info: ServiceInfo = INFO
) -> thrift.ThriftClient:
    """A StreamService client of ``address`` over ``protocol``."""
    return thrift.new_client(
        info,
        "stream",
        client.with_host_ports(address),
        client.with_transport_protocol(protocol),
        NOT_ABOUT_DIALING,
        *opts,
    )
