"""The Echo server: ``python examples/echo/server.py --addr 127.0.0.1:8888 --transport grpc``.

Prints ``LISTENING <addr>`` once serving; SIGINT/SIGTERM drain in-flight calls and exit.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import BizStatusError, eventloop, metainfo, server


class Echo(echo_kitex.EchoHandler):
    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        if request.message.startswith("biz:"):
            raise BizStatusError(1001, request.message[4:], {"reason": "demo"})
        # gRPC upper-cases metainfo keys on receipt (Kitex's HTTP/2 rule); TTHeader keeps their case.
        trace = metainfo.get_value("TRACE") or metainfo.get_value("trace") or "-"
        return echo_pb2.EchoReply(message=f"{request.message} (trace={trace})", seq=request.seq)

    async def ServerStream(self, request: echo_pb2.EchoRequest) -> AsyncIterator[echo_pb2.EchoReply]:
        for i in range(request.seq or 3):
            yield echo_pb2.EchoReply(message=request.message, seq=i)

    async def ClientStream(self, requests: AsyncIterator[echo_pb2.EchoRequest]) -> echo_pb2.EchoReply:
        words = [r.message async for r in requests]
        return echo_pb2.EchoReply(message=" ".join(words), seq=len(words))

    async def Bidi(self, requests: AsyncIterator[echo_pb2.EchoRequest]) -> AsyncIterator[echo_pb2.EchoReply]:
        async for r in requests:
            yield echo_pb2.EchoReply(message=r.message.upper(), seq=r.seq)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8888")
    parser.add_argument("--transport", default="grpc")
    args = parser.parse_args()
    svr = echo_kitex.new_server(
        Echo(),
        server.with_service_addr(args.addr),
        server.with_transport_protocol(args.transport),
        server.with_exit_wait_time(2),
    )
    await svr.start()
    print(f"LISTENING {svr.address}", flush=True)
    await svr.run()


if __name__ == "__main__":
    eventloop.run(main())
