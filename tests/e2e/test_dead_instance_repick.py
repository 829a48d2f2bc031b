"""An instance that goes away costs no call: its connect failure re-picks (issue 23, finding 8).

Three servers; every client (grpcio and h2) has a ready connection to each; one server stops while
calls run. The resolver (a stale one, or ``with_host_ports``) still lists it, so the balancer keeps
picking it: each such pick must fail as GetConnectionError, which the discovery middleware re-picks,
and no call fails.
On grpcio that failure is grpcio's own "failed to connect to all addresses" UNAVAILABLE; an
UNAVAILABLE that a live server sends, whatever its text, is not a connect failure and is not retried.
Real servers on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import TransportProtocol, client, server
from kitex_grpc.discovery.resolver import Instance, Result, default_diff
from kitex_grpc.errors import GetConnectionError, RemoteOrNetworkError, StatusError
from kitex_grpc.status import StatusCode
from tests.support import EchoService, Reply, Req, connect, serve

GRPC, H2 = TransportProtocol.GRPC, TransportProtocol.GRPC_H2
ROUNDS, CONCURRENCY = 12, 8
# How long a pick of the stopped instance may wait for its connection before the re-pick.
CONNECT_TIMEOUT = 0.2


class StaleResolver:
    """Discovery that has not noticed the stopped instance (its registry entry outlives it)."""

    name = "stale"

    def __init__(self, addresses: list[str]) -> None:
        self._result = Result.of("echo", [Instance(a) for a in addresses])

    def target(self, endpoint: Any) -> str:
        return "echo"

    async def resolve(self, target: str) -> Result:
        return self._result

    def diff(self, cache_key: str, prev: Result, next: Result) -> Any:
        return default_diff(cache_key, prev, next)


@pytest.mark.parametrize("source", ["resolver", "host_ports"])
@pytest.mark.parametrize("protocol", [GRPC, H2], ids=lambda tp: tp.name)
async def test_no_call_fails_when_one_of_three_instances_stops(
    protocol: TransportProtocol, source: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            # The servers are GRPC_H2's: a grpcio server cancels the calls that reach it while it
            # stops (CANCELLED, the handler never runs), a server-side matter this test is not about.
            await stack.enter_async_context(serve(server.with_transport_protocol(H2)))
            for _ in range(3)
        ]
        addresses = [svr.address for svr, _ in servers]
        where = (
            client.with_resolver(StaleResolver(addresses))
            if source == "resolver"
            else client.with_host_ports(*addresses)
        )
        cli = echo_kitex.new_client(
            "echo",
            where,
            client.with_transport_protocol(protocol),
            client.with_connect_timeout(CONNECT_TIMEOUT),
        )
        stack.push_async_callback(cli.close)
        for i in range(6):  # a ready connection to every instance
            assert (await cli.Unary(Req(message=f"warm{i}"))).message == f"warm{i}"
        assert all(handler.calls > 0 for _, handler in servers)

        stopped, stopped_handler = servers[1]
        failures: list[BaseException] = []
        replies = 0
        async with asyncio.timeout(30):
            for round_no in range(ROUNDS):
                calls = [cli.Unary(Req(message=f"r{round_no}c{i}")) for i in range(CONCURRENCY)]
                if round_no == 2:  # stopped under load, as SIGTERM does
                    calls.append(stopped.stop())
                for result in await asyncio.gather(*calls, return_exceptions=True):
                    if isinstance(result, BaseException):
                        failures.append(result)
                    elif isinstance(result, Reply):
                        replies += 1
        assert failures == [], [(repr(f), stopped_handler.calls, stopped_handler.finished) for f in failures]
        assert replies == ROUNDS * CONCURRENCY
        after_stop = stopped_handler.calls
        assert (await cli.Unary(Req(message="last"))).message == "last"
        assert stopped_handler.calls == after_stop


class Unavailable(EchoService):
    async def Unary(self, request: Req) -> Reply:
        self.calls += 1
        raise StatusError(
            StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: UNKNOWN: sent by a live server",
        )


async def test_grpcio_a_live_servers_unavailable_is_not_a_connect_failure() -> None:
    async with (
        serve(server.with_transport_protocol(GRPC), handler=Unavailable()) as (svr, handler),
        connect(svr, client.with_transport_protocol(GRPC)) as cli,
    ):
        with pytest.raises(RemoteOrNetworkError) as info:
            await asyncio.wait_for(cli.Unary(Req(message="x")), 10)
        assert not isinstance(info.value, GetConnectionError)
        assert info.value.grpc_status is StatusCode.UNAVAILABLE and info.value.remote
        assert handler.calls == 1  # the server saw the request once: nothing re-picked or re-sent
