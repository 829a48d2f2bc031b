"""Thrift streaming client: ``python examples/thrift_streaming/client.py --addr 127.0.0.1:8888``.

Calls every method of idl/stream.thrift over gRPC with Thrift payloads (``--transport grpc_h2`` or
``grpc``; both send ``content-type: application/grpc+thrift``) and prints what comes back. Works
against examples/thrift_streaming/server.py and against a Go Kitex server of the same IDL.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kitex_grpc import BizStatusError, client, eventloop, thrift

IDL = Path(__file__).resolve().parents[2] / "idl" / "stream.thrift"
stream_thrift: Any = thrift.load(IDL)
Req = stream_thrift.StreamRequest


async def demo(addr: str, transport: str) -> list[str]:
    """Call each method once; returns the lines it prints."""
    lines: list[str] = []
    cli = thrift.new_client(
        stream_thrift.StreamService,
        "stream",
        client.with_host_ports(addr),
        client.with_transport_protocol(transport),
        client.with_connect_timeout(2),
    )
    async with cli:
        reply = await cli.Echo(Req(message="hello", seq=1))
        lines.append(f"Echo: {reply.message} seq={reply.seq}")
        try:
            await cli.Echo(Req(message="fail"))
        except stream_thrift.StreamError as exc:
            lines.append(f"Echo raised StreamError(code={exc.code}, message={exc.message!r})")
        lines.append(f"EchoUnary: {(await cli.EchoUnary(Req(message='unary'))).message}")

        seqs = [r.seq async for r in cli.EchoServer(Req(message="tick", count=3))]
        lines.append(f"EchoServer: seqs {seqs}")
        got: list[int] = []
        try:
            async for r in cli.EchoServer(Req(message="biz:out of ticks", count=2)):
                got.append(r.seq)
        except BizStatusError as exc:
            lines.append(f"EchoServer: seqs {got}, then BizStatusError({exc.code}, {exc.message!r})")

        upload = await cli.EchoClient()
        for word in ("a", "b", "c"):
            await upload.send(Req(message=word))
        reply = await upload.close_and_recv()
        lines.append(f"EchoClient: {reply.message!r} ({reply.seq} messages)")

        chat = await cli.EchoBidi()
        await chat.send(Req(message="ping", seq=1))
        lines.append(f"EchoBidi: {(await chat.recv()).message}")
        await chat.send(Req(message="pong", seq=2))
        await chat.close_send()
        async for r in chat:
            lines.append(f"EchoBidi: {r.message} seq={r.seq}")
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8888")
    parser.add_argument("--transport", default="grpc_h2", choices=["grpc_h2", "grpc"])
    args = parser.parse_args()
    for line in await demo(args.addr, args.transport):
        print(line, flush=True)


if __name__ == "__main__":
    eventloop.run(main())
