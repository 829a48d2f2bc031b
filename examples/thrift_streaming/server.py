"""Thrift streaming server: ``python examples/thrift_streaming/server.py --addr 127.0.0.1:8888``.

The IDL (idl/stream.thrift) is loaded at run time; its methods marked ``streaming.mode`` are streams
whose messages are the bare argument and return structs. Served over gRPC with Thrift payloads
(``content-type: application/grpc+thrift``), which Go Kitex clients generated without ``-streamx`` use
for Thrift streaming. ``--transport`` picks the gRPC server (``grpc_h2`` or ``grpc``); ``ttheader``
serves the same port to TTHeader/Framed Thrift too (HTTP/2 is detected per connection). Prints
``LISTENING <addr>`` once serving; SIGINT/SIGTERM drain and exit.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import BizStatusError, eventloop, server, thrift

IDL = Path(__file__).resolve().parents[2] / "idl" / "stream.thrift"
stream_thrift: Any = thrift.load(IDL)
Reply = stream_thrift.StreamReply


class StreamService:
    """The handler shapes are those of protobuf streams."""

    async def Echo(self, req: Any) -> Any:  # ping-pong: the IDL argument in, the result out
        if req.message == "fail":
            raise stream_thrift.StreamError(code=1, message="declared")  # the caller gets a StreamError
        return Reply(message=req.message, seq=req.seq)

    async def EchoUnary(self, req: Any) -> Any:  # streaming.mode="unary": the same shape
        return Reply(message=req.message, seq=req.seq)

    async def EchoServer(self, req: Any) -> AsyncIterator[Any]:  # server stream: an async generator
        for i in range(req.count):
            yield Reply(message=req.message, seq=i)
        if req.message.startswith("biz:"):
            raise BizStatusError(1002, req.message[4:])  # after the replies: the caller gets them, then this

    async def EchoClient(self, requests: AsyncIterator[Any]) -> Any:  # client stream: requests in, one reply
        messages = [req.message async for req in requests]
        return Reply(message=",".join(messages), seq=len(messages))

    async def EchoBidi(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:  # bidi: both at once
        count = 0
        async for req in requests:
            count += 1
            yield Reply(message=req.message.upper(), seq=req.seq)
        yield Reply(message="eof", seq=count)  # after the client's close_send the server can still send


def new_server(addr: str, transport: str) -> kitex_grpc.Server:
    """The StreamService server on ``addr`` (``host:0`` picks a free port)."""
    svr = kitex_grpc.new_server(
        server.with_service_addr(addr),
        server.with_transport_protocol(transport),
        server.with_exit_wait_time(2),
    )
    return svr.register_service(thrift.service_info(stream_thrift.StreamService), StreamService())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8888")
    parser.add_argument("--transport", default="grpc_h2", choices=["grpc_h2", "grpc", "ttheader"])
    args = parser.parse_args()
    svr = new_server(args.addr, args.transport)
    await svr.start()
    print(f"LISTENING {svr.address}", flush=True)
    await svr.run()


if __name__ == "__main__":
    eventloop.run(main())
