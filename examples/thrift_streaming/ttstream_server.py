"""Thrift streaming server: ``python examples/thrift_streaming/ttstream_server.py --addr 127.0.0.1:8888``.

Serves idl/stream.thrift's StreamService. One port answers TTHeader Streaming (a Go client generated
with ``kitex -streamx``, or ``ttstream_client.py``), TTHeader/Framed for the unary methods, and gRPC.
Prints ``LISTENING <addr>`` once serving; SIGINT/SIGTERM drain the open streams and exit.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import BizStatusError, TransportProtocol, eventloop, metainfo, server, thrift

IDL = Path(__file__).resolve().parents[2] / "idl" / "stream.thrift"
stream_thrift: Any = thrift.load(IDL, "stream_example_thrift")


class StreamService:
    """Stream handlers take and give bare structs: async iterators in, async generators out."""

    async def Echo(self, req: Any) -> Any:
        return stream_thrift.StreamReply(message=req.message, seq=req.seq)

    async def EchoUnary(self, req: Any) -> Any:
        return stream_thrift.StreamReply(message=req.message, seq=req.seq)

    async def EchoServer(self, req: Any) -> AsyncIterator[Any]:
        for i in range(req.count):
            yield stream_thrift.StreamReply(message=req.message, seq=i)
        if req.message.startswith("biz:"):  # "biz:<code>:<message>", as interop/cmd/ttstream-server
            _, code, text = req.message.split(":", 2)
            raise BizStatusError(int(code), text, {"k": "v"})  # after the replies

    async def EchoClient(self, requests: AsyncIterator[Any]) -> Any:
        got = [r.message async for r in requests]
        return stream_thrift.StreamReply(message=",".join(got), seq=len(got))

    async def EchoBidi(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        trace = metainfo.get_value("trace") or "-"
        async for r in requests:
            yield stream_thrift.StreamReply(message=f"{r.message} (trace={trace})", seq=r.seq)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8888")
    args = parser.parse_args()
    svr = kitex_grpc.new_server(
        server.with_service_addr(args.addr),
        server.with_transport_protocol(TransportProtocol.TTHEADER_STREAMING),
        server.with_exit_wait_time(2),
    )
    svr.register_service(thrift.service_info(stream_thrift.StreamService), StreamService())
    await svr.start()
    print(f"LISTENING {svr.address}", flush=True)
    await svr.run()


if __name__ == "__main__":
    eventloop.run(main())
