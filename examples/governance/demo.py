"""Governance on real loopback servers: retry around a hung instance, a circuit breaker, server limits.

PYTHONPATH=. python examples/governance/demo.py
"""

from __future__ import annotations

import asyncio
import logging

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import callopt, client, server
from kitex_grpc.errors import KitexError
from kitex_grpc.governance import CBConfig, CBSuite, FailurePolicy, StopPolicy, error_fallback

# The handlers here fail on purpose; keep the server's per-failure tracebacks out of the demo output.
logging.getLogger("kitex_grpc.server").setLevel(logging.ERROR)


class Echo(echo_kitex.EchoHandler):
    def __init__(self, hang: bool = False) -> None:
        self.hang = hang

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        if self.hang:
            await asyncio.Event().wait()
        if request.message == "fail":
            raise RuntimeError("failing on purpose")
        await asyncio.sleep(0.05)
        return echo_pb2.EchoReply(message=request.message)


async def start(handler: Echo, *opts: server.ServerOption) -> server.Server:
    svr = echo_kitex.new_server(handler, server.with_service_addr("127.0.0.1:0"), *opts)
    await svr.start()
    return svr


async def main() -> None:
    hung, good = await start(Echo(hang=True)), await start(Echo())
    limited = await start(Echo(), server.with_concurrency_limit(2))
    suite = CBSuite(service_config=CBConfig(err_rate=0.5, min_sample=5))
    cli = echo_kitex.new_client(
        "echo",
        client.with_host_ports(hung.address, good.address),
        client.with_rpc_timeout(0.2),
        client.with_failure_retry(FailurePolicy(StopPolicy(max_retry_times=2))),
    )
    breaker = echo_kitex.new_client(
        "echo", client.with_host_ports(good.address), client.with_circuit_breaker(suite)
    )
    async with cli, breaker:
        print("chain:", " -> ".join(cli.client.chain_names))
        replies = [(await cli.Unary(echo_pb2.EchoRequest(message=f"m{i}"))).message for i in range(4)]
        stats = cli.client.retry.stats if cli.client.retry else None
        print(f"retry: 4 calls over a hung and a good instance: {replies}; retries={stats and stats.retries}")
        outcomes = []
        for _ in range(8):
            try:
                await breaker.Unary(echo_pb2.EchoRequest(message="fail"))
            except KitexError as exc:
                outcomes.append(type(exc).__name__)
        print("circuit breaker:", outcomes)

        def fallback(ri: object, request: object, reply: object, error: BaseException | None) -> object:
            return echo_pb2.EchoReply(message=f"fallback after {type(error).__name__}")

        reply = await cli.Unary(
            echo_pb2.EchoRequest(),
            callopt.with_host_port(hung.address),
            callopt.with_fallback(error_fallback(fallback)),
        )
        print("fallback:", reply.message)
    lim = echo_kitex.new_client("echo", client.with_host_ports(limited.address))
    async with lim:
        results = await asyncio.gather(
            *(lim.Unary(echo_pb2.EchoRequest(message="x")) for _ in range(5)), return_exceptions=True
        )
        print("concurrency limit 2, 5 at once:", [type(r).__name__ for r in results])
    for svr in (hung, good, limited):
        await svr.stop()


if __name__ == "__main__":
    asyncio.run(main())
