"""A server process for the CLI tests: the Echo test service (protobuf) with reflection and health,
and the Rich Thrift service on a second port. Prints ``READY pb=<addr> thrift=<addr>``, serves until
stdin closes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import kitex_grpc
from gen.echo.v1 import echo_kitex
from kitex_grpc import server, thrift
from tests.generic.support import TypedRich, rich_thrift
from tests.support import EchoService


async def main() -> None:
    transport = sys.argv[1] if len(sys.argv) > 1 else "grpc_h2"
    pb = echo_kitex.new_server(
        EchoService(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(transport),
        server.with_reflection(),
        server.with_health(),
        server.with_exit_wait_time(0.5),
    )
    th = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol("ttheader"),
        server.with_exit_wait_time(0.5),
    )
    th.register_service(thrift.service_info(rich_thrift.Rich), TypedRich())
    await pb.start()
    await th.start()
    print(f"READY pb={pb.address} thrift={th.address}", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the test closes our stdin
    await pb.stop()
    await th.stop()


if __name__ == "__main__":
    asyncio.run(main())
