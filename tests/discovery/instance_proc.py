"""An Echo server process for tests: prints ``ADDR host:port`` once listening, serves until killed.

Usage: instance_proc.py [--etcd host:port --ttl seconds --service name]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from gen.echo.v1 import echo_kitex
from kitex_grpc import server
from tests.support import EchoService


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--etcd", default="")
    parser.add_argument("--ttl", type=int, default=60)
    parser.add_argument("--service", default="echo")
    args = parser.parse_args()
    opts = [server.with_service_addr("127.0.0.1:0"), server.with_server_basic_info(args.service)]
    if args.etcd:
        from kitex_grpc.discovery.etcd import EtcdRegistry

        opts.append(server.with_registry(EtcdRegistry([args.etcd], ttl=args.ttl)))
    svr = echo_kitex.new_server(EchoService(), *opts)
    await svr.start()
    sys.stdout.write(f"ADDR {svr.address}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
