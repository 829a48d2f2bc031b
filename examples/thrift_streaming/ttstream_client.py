"""Thrift streaming client over TTHeader Streaming:
``python examples/thrift_streaming/ttstream_client.py --addr HOST:PORT``.

Runs the three stream kinds of idl/stream.thrift's StreamService, metainfo, a biz error after the
replies, a deadline and a cancel, on one multiplexed connection, then a unary call (which goes over
TTHeader, as a Kitex ``-streamx`` client sends it). Works against ``ttstream_server.py`` and against a
Go Kitex server generated with ``kitex -streamx`` (interop/cmd/ttstream-server).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kitex_grpc import (
    BizStatusError,
    RPCTimeoutError,
    TransportProtocol,
    callopt,
    client,
    eventloop,
    metainfo,
    thrift,
)

IDL = Path(__file__).resolve().parents[2] / "idl" / "stream.thrift"
stream_thrift: Any = thrift.load(IDL, "stream_example_thrift")
Request = stream_thrift.StreamRequest


async def main(addr: str) -> None:
    async with thrift.new_client(
        stream_thrift.StreamService,
        "stream",
        client.with_host_ports(addr),
        client.with_transport_protocol(TransportProtocol.TTHEADER_STREAMING),
        client.with_stream_recv_timeout(5),
        client.with_connect_timeout(1),  # for the unary call over TTHeader (Kitex's default is 50 ms)
    ) as cli:
        with metainfo.with_value("trace", "demo-1"):
            bidi = await cli.EchoBidi()
        for i in range(3):
            await bidi.send(Request(message=f"m{i}", seq=i))
        await bidi.close_send()  # half-close: the replies keep coming
        print("bidi:", [r.message async for r in bidi])

        print("server stream:", [r.seq async for r in cli.EchoServer(Request(message="ok", count=4))])

        up = await cli.EchoClient()
        for word in ("a", "b", "c"):
            await up.send(Request(message=word))
        print("client stream:", (await up.close_and_recv()).message)

        got = []
        try:
            async for r in cli.EchoServer(Request(message="biz:1001:quota", count=2)):
                got.append(r.seq)
        except BizStatusError as exc:
            print(f"biz error after {got}: code={exc.code} message={exc.message} extra={exc.extra}")

        slow = await cli.EchoBidi(callopt.with_rpc_timeout(0.2))  # the stream's deadline
        try:
            await slow.recv()  # nothing sent: nothing comes back before the deadline
        except RPCTimeoutError as exc:
            print("deadline:", exc)

        cancelled = await cli.EchoBidi()
        cancelled.cancel()  # an Rst goes to the server; the handler is cancelled
        print("unary:", (await cli.Echo(Request(message="ping"))).message)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8888")
    eventloop.run(main(parser.parse_args().addr))
