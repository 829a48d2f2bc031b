"""The Echo client: ``python examples/echo/client.py --addr 127.0.0.1:8888 --transport grpc``.

Makes one call of each type and prints what came back.
"""

from __future__ import annotations

import argparse

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import BizStatusError, callopt, client, eventloop, metainfo


async def main(addr: str, transport: str) -> None:
    async with echo_kitex.new_client(
        "echo",
        client.with_host_ports(addr),
        client.with_transport_protocol(transport),
        client.with_rpc_timeout(2),
    ) as cli:
        with metainfo.with_value("trace", "demo-1"):
            reply = await cli.Unary(echo_pb2.EchoRequest(message="hello", seq=1))
        print(f"  unary          -> {reply.message!r}")

        if transport.lower() in ("ttheader", "ttheader_framed", "framed"):
            # Kitex Protobuf over TTHeader is ping-pong only: streams need gRPC.
            await _biz_error(cli)
            return

        seqs = [r.seq async for r in cli.ServerStream(echo_pb2.EchoRequest(message="tick", seq=3))]
        print(f"  server stream  -> seq {seqs}")

        up = await cli.ClientStream()
        for word in ("one", "two", "three"):
            await up.send(echo_pb2.EchoRequest(message=word))
        reply = await up.close_and_recv()
        print(f"  client stream  -> {reply.message!r} ({reply.seq} messages)")

        bidi = await cli.Bidi(callopt.with_rpc_timeout(5))
        echoed = []
        for i, word in enumerate(("ping", "pong")):
            await bidi.send(echo_pb2.EchoRequest(message=word, seq=i))
            echoed.append((await bidi.recv()).message)
        await bidi.close_send()
        print(f"  bidi           -> {echoed}")

        await _biz_error(cli)


async def _biz_error(cli: echo_kitex.EchoClient) -> None:
    try:
        await cli.Unary(echo_pb2.EchoRequest(message="biz:out of credit"))
    except BizStatusError as err:
        print(f"  biz error      -> code={err.code} message={err.message!r} extra={err.extra}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8888")
    parser.add_argument("--transport", default="grpc")
    args = parser.parse_args()
    eventloop.run(main(args.addr, args.transport))
