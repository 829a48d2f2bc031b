"""Run by tests/packaging/test_wheel.py with the interpreter of a fresh venv that has only the wheel.

Working directory: a scratch folder holding ``gen/`` (made by the installed ``kitex-grpc gen``) and
``echo.thrift``; the source tree is not on ``sys.path``. Serves and calls Echo over every transport:
unary and each stream kind over gRPC, unary over TTHeader, TTHeaderFramed and Framed. Prints one line
per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import TransportProtocol, client, server, thrift
from kitex_grpc.compiled import describe_build

sys.path.insert(0, str(Path.cwd()))
from gen.echo.v1 import echo_kitex, echo_pb2

Req = echo_pb2.EchoRequest
Reply = echo_pb2.EchoReply
ECHO_THRIFT: Any = thrift.load(Path.cwd() / "echo.thrift")


class Echo(echo_kitex.EchoHandler):
    async def Unary(self, request: Req) -> Reply:
        return Reply(message=request.message, seq=request.seq)

    async def ServerStream(self, request: Req) -> AsyncIterator[Reply]:
        for i in range(3):
            yield Reply(message=request.message, seq=i)

    async def ClientStream(self, requests: AsyncIterator[Req]) -> Reply:
        return Reply(message=",".join([r.message async for r in requests]))

    async def Bidi(self, requests: AsyncIterator[Req]) -> AsyncIterator[Reply]:
        async for r in requests:
            yield Reply(message=r.message.upper(), seq=r.seq)


class ThriftEcho:
    async def echo(self, req: Any) -> Any:
        return ECHO_THRIFT.EchoReply(message=req.message, seq=req.seq)


def check(what: str, ok: bool) -> None:
    print(f"{what}: {'ok' if ok else 'FAILED'}", flush=True)
    if not ok:
        raise SystemExit(1)


async def grpc_calls(protocol: TransportProtocol) -> None:
    svr = echo_kitex.new_server(
        Echo(), server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(protocol)
    )
    await svr.start()
    cli = echo_kitex.new_client(
        "echo",
        client.with_host_ports(svr.address),
        client.with_transport_protocol(protocol),
        client.with_connect_timeout(5),
        client.with_rpc_timeout(10),
    )
    try:
        reply = await cli.Unary(Req(message="hi", seq=7))
        check(f"{protocol.name} unary", (reply.message, reply.seq) == ("hi", 7))
        seqs = [r.seq async for r in cli.ServerStream(Req(message="s"))]
        check(f"{protocol.name} server stream", seqs == [0, 1, 2])

        upload = await cli.ClientStream()
        for m in ("a", "b", "c"):
            await upload.send(Req(message=m))
        reply = await upload.close_and_recv()
        check(f"{protocol.name} client stream", reply.message == "a,b,c")
        stream = await cli.Bidi()
        await stream.send(Req(message="x", seq=1))
        first = await stream.recv()
        await stream.close_send()
        check(f"{protocol.name} bidi", (first.message, first.seq) == ("X", 1))
    finally:
        await cli.close()
        await svr.stop()


async def ttheader_calls() -> None:
    protobuf_svr = echo_kitex.new_server(
        Echo(), server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol("ttheader")
    )
    thrift_svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol("ttheader")
    )
    thrift_svr.register_service(thrift.service_info(ECHO_THRIFT.Echo), ThriftEcho())
    await protobuf_svr.start()
    await thrift_svr.start()
    try:
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(protobuf_svr.address),
            client.with_transport_protocol("ttheader_framed"),
        )
        reply = await cli.Unary(Req(message="pb", seq=3))
        check("TTHEADER_FRAMED Kitex Protobuf unary", (reply.message, reply.seq) == ("pb", 3))
        await cli.close()
        for protocol in ("ttheader", "ttheader_framed", "framed"):
            tcli = kitex_grpc.new_client(
                thrift.service_info(ECHO_THRIFT.Echo),
                "echo",
                client.with_host_ports(thrift_svr.address),
                client.with_transport_protocol(protocol),
            )
            treply = await tcli.call("echo", ECHO_THRIFT.EchoRequest(message="t", seq=5))
            check(f"{protocol.upper()} Thrift unary", (treply.message, treply.seq) == ("t", 5))
            await tcli.close()
    finally:
        await protobuf_svr.stop()
        await thrift_svr.stop()


async def main() -> None:
    print(f"kitex_grpc from {Path(kitex_grpc.__file__).parent}", flush=True)
    print(describe_build(), flush=True)
    for protocol in (TransportProtocol.GRPC, TransportProtocol.GRPC_H2):
        await grpc_calls(protocol)
    await ttheader_calls()


if __name__ == "__main__":
    asyncio.run(main())
