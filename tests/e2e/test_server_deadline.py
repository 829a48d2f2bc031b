"""The server's deadline (grpc-timeout / TTHeader RPCTimeout) on every transport.

The server_timeout middleware arms one loop timer per call with a deadline that cancels the call's
task; these cases pin down that a handler is cancelled however it first waits (on a future, or on a
bare ``yield`` as ``asyncio.sleep(0)`` does), and that one that never waits is answered.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kitex_grpc import TransportProtocol, callopt, client, server
from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.errors import RPCTimeoutError
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder, encode
from tests.support import EchoService, Reply, Req, connect, serve
from tests.ttheader import support as tt


class Waiting:
    """How a handler behaves, keyed on the message: shared by the gRPC and the Thrift handler."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.finished: list[str] = []

    async def behave(self, message: str) -> str:
        try:
            if message == "bare-yield-then-block":
                await asyncio.sleep(0)  # suspends with a bare yield (no future)
                await asyncio.Event().wait()
            elif message == "block":
                await asyncio.Event().wait()
            elif message == "wait-briefly":
                await asyncio.sleep(0)
                await asyncio.sleep(0.01)
            # "at-once": never waits
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        self.finished.append(message)
        return message


class ErrorTracer:
    """A server tracer: the error each served call finished with (None for success)."""

    def __init__(self) -> None:
        self.errors: list[BaseException | None] = []

    def start(self, ri: RPCInfo) -> None:
        pass

    def finish(self, ri: RPCInfo) -> None:
        self.errors.append(ri.stats.error)


class GrpcWaiting(EchoService):
    def __init__(self, waiting: Waiting) -> None:
        super().__init__()
        self.waiting = waiting

    async def Unary(self, request: Req) -> Reply:
        return Reply(message=await self.waiting.behave(request.message))


class ThriftWaiting(tt.ThriftEcho):
    def __init__(self, waiting: Waiting) -> None:
        super().__init__()
        self.waiting = waiting

    async def echo(self, req: Any) -> Any:
        return tt.Reply(message=await self.waiting.behave(req.message))


SERVER_DEADLINE = 0.1  # what the server is told; the client itself waits up to CLIENT_WAIT
CLIENT_WAIT = 5.0


def _shorter_deadline(next_endpoint: Any) -> Any:
    """Client middleware: send a deadline of SERVER_DEADLINE (grpc-timeout comes from ri.deadline)
    while the client's own timer runs CLIENT_WAIT, so only the server's deadline can end the call."""

    async def shorten(ri: RPCInfo, request: Any) -> Any:
        ri.deadline = time.monotonic() + SERVER_DEADLINE
        return await next_endpoint(ri, request)

    return shorten


async def _call_grpc(protocol: TransportProtocol, waiting: Waiting, tracer: ErrorTracer, message: str) -> str:
    tp = server.with_transport_protocol(protocol)
    # The client is always the h2 transport's. grpcio's client enforces the deadline it sends: its
    # cancellation (RST_STREAM) can reach the server a moment before the server's own timer fires,
    # and the call would then end as cancelled by the client rather than by the server's deadline.
    # The h2 client sends the same grpc-timeout and waits CLIENT_WAIT.
    async with (
        serve(tp, server.with_tracer(tracer), handler=GrpcWaiting(waiting)) as (svr, _),
        connect(
            svr,
            client.with_transport_protocol(TransportProtocol.GRPC_H2),
            client.with_middleware(_shorter_deadline),
        ) as cli,
    ):
        return str((await cli.Unary(Req(message=message), callopt.with_rpc_timeout(CLIENT_WAIT))).message)


async def _call_ttheader(waiting: Waiting, tracer: ErrorTracer, message: str) -> str:
    """A raw TTHeader request with RPCTimeout (int key 12) = SERVER_DEADLINE; no client timer at all.
    Returns the reply's message, or the exception's text for an EXCEPTION reply."""
    method = tt.ECHO_INFO.methods["echo"]
    body = method.serialize_request(method.pack_request(tt.Req(message=message, seq=1)))
    int_info = {22: "1", 12: str(int(SERVER_DEADLINE * 1000))}
    request = encode(Framing.TTHEADER, THRIFT, "echo", 1, 1, body, {"isn": "Echo"}, int_info)
    async with tt.serve(server.with_tracer(tracer), handler=ThriftWaiting(waiting)) as (svr, _):
        reader, writer = await tt.open_raw(svr.address)
        try:
            writer.write(request)
            (reply,) = MessageDecoder(Framing.TTHEADER, 1 << 20).receive_data(
                await tt.read_frame(reader, CLIENT_WAIT)
            )
        finally:
            writer.close()
    if reply.msg_type == 3:
        return "exception: " + THRIFT.decode_exception(reply.body)[0]
    return str(method.deserialize_response(reply.body).success.message)


async def _call(protocol: TransportProtocol, waiting: Waiting, tracer: ErrorTracer, message: str) -> str:
    if protocol is TransportProtocol.TTHEADER:
        return await _call_ttheader(waiting, tracer, message)
    return await _call_grpc(protocol, waiting, tracer, message)


PROTOCOLS = [TransportProtocol.GRPC, TransportProtocol.GRPC_H2, TransportProtocol.TTHEADER]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
@pytest.mark.parametrize("message", ["at-once", "wait-briefly"])
async def test_a_handler_within_its_deadline_is_answered(protocol: TransportProtocol, message: str) -> None:
    waiting, tracer = Waiting(), ErrorTracer()
    assert await asyncio.wait_for(_call(protocol, waiting, tracer, message), 10) == message
    assert waiting.finished == [message] and not waiting.cancelled.is_set()
    assert tracer.errors == [None]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
@pytest.mark.parametrize("message", ["block", "bare-yield-then-block"])
async def test_a_handler_past_its_deadline_is_cancelled(protocol: TransportProtocol, message: str) -> None:
    waiting, tracer = Waiting(), ErrorTracer()
    started = time.monotonic()
    if protocol is TransportProtocol.TTHEADER:
        text = await asyncio.wait_for(_call(protocol, waiting, tracer, message), 10)
        assert text.startswith("exception: ") and "deadline" in text
    else:
        with pytest.raises(RPCTimeoutError):
            await asyncio.wait_for(_call(protocol, waiting, tracer, message), 10)
    assert time.monotonic() - started < CLIENT_WAIT  # the server answered; the client did not give up
    assert waiting.cancelled.is_set() and waiting.finished == []
    assert len(tracer.errors) == 1 and isinstance(tracer.errors[0], RPCTimeoutError)
