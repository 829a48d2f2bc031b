"""Discovery through etcd (kitex-contrib registry-etcd layout).

Needs a running etcd (``apt-get install -y etcd-server``; ``etcd`` listens on 127.0.0.1:2379)::

    PYTHONPATH=. python examples/discovery/etcd_demo.py [etcd-host:port]

Two Echo servers register as ``echo``; a client resolves them through etcd and balances over them;
one server stops (it deregisters first) and the client stops routing to it.
"""

from __future__ import annotations

import asyncio
import collections
import sys

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client, server
from kitex_grpc.discovery.etcd import EtcdRegistry, EtcdResolver


class Echo(echo_kitex.EchoHandler):
    def __init__(self, name: str) -> None:
        self.name = name

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        return echo_pb2.EchoReply(message=self.name)


async def main(endpoint: str) -> None:
    registry = EtcdRegistry([endpoint], ttl=10)
    servers = []
    for name in ("a", "b"):
        svr = echo_kitex.new_server(
            Echo(name),
            server.with_service_addr("127.0.0.1:0"),
            server.with_server_basic_info("echo"),
            server.with_registry(registry),
        )
        await svr.start()
        print(f"server {name} on {svr.address}, registered as kitex/registry-etcd/echo/{svr.address}")
        servers.append(svr)
    resolver = EtcdResolver([endpoint])
    cli = echo_kitex.new_client("echo", client.with_resolver(resolver), client.with_rpc_timeout(2))
    async with cli:
        seen = collections.Counter([(await cli.Unary(echo_pb2.EchoRequest())).message for _ in range(10)])
        print(f"10 calls through etcd: {dict(seen)}")
        await servers[0].stop()  # deregisters first; etcd's watch tells the client at once
        for _ in range(100):
            if cli.client.discovery.evicted:
                break
            await asyncio.sleep(0.05)
        seen = collections.Counter([(await cli.Unary(echo_pb2.EchoRequest())).message for _ in range(10)])
        print(f"after server a stopped: {dict(seen)} (evicted {cli.client.discovery.evicted})")
    await servers[1].stop()
    await registry.close()
    await resolver.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:2379"))
