"""The bridge's transport hooks on TTHeader: a removed instance's pool is closed; warm-up pre-dials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from kitex_grpc import callopt, client, thrift
from kitex_grpc.discovery import Change, Instance, Result, WeightedRoundRobinBalancer, default_diff
from kitex_grpc.errors import GetConnectionError
from kitex_grpc.governance import WarmUpOption
from tests.discovery.helpers import free_port
from tests.support import NOT_ABOUT_DIALING
from tests.ttheader.support import (
    Req,
    ThriftEcho,
    WatchedConnections,
    echo_thrift,
    serve,
    watch_connections,
)


class MutableResolver:
    name = "mutable"

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)

    def target(self, endpoint: Any) -> str:
        return str(endpoint.service_name)

    async def resolve(self, target: str) -> Result:
        return Result.of(target, [Instance(a) for a in self.addresses])

    def diff(self, cache_key: str, prev: Result, next: Result) -> tuple[Change, bool]:
        return default_diff(cache_key, prev, next)


@asynccontextmanager
async def ttheader_instances(count: int) -> AsyncIterator[list[tuple[str, ThriftEcho, WatchedConnections]]]:
    """``count`` TTHeader Echo servers on 127.0.0.1: (address, handler, the server's connections)."""
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(count):
            svr, handler = await stack.enter_async_context(serve())
            out.append((svr.address, handler, watch_connections(svr)))
        yield out


def new_client(resolver: MutableResolver, *opts: client.ClientOption) -> thrift.ThriftClient:
    # a long refresh interval: the test refreshes the cache itself, when it wants the change seen
    return thrift.new_client(
        echo_thrift.Echo,
        "echo",
        client.with_resolver(resolver),
        client.with_transport_protocol("ttheader"),
        client.with_load_balancer(WeightedRoundRobinBalancer(), refresh_interval=60.0),
        NOT_ABOUT_DIALING,
        *opts,
    )


async def test_removed_instance_closes_its_idle_connections_now_and_busy_ones_on_release() -> None:
    async with ttheader_instances(2) as ((a, handler_a, conns_a), (b, _, conns_b)):
        resolver = MutableResolver(a, b)
        cli = new_client(resolver)
        async with cli:
            transport: Any = cli.client._transport
            # 8 calls at once through the balancer: round robin over a and b, one connection per call
            replies = await asyncio.gather(*(cli.echo(Req(message=str(i))) for i in range(8)))
            assert sorted(int(r.message) for r in replies) == list(range(8))
            assert transport.pool.idle_count(a) == 4 and transport.pool.idle_count(b) == 4
            await conns_a.until(lambda n: n == 4)

            # one call to a stays in flight (it takes one of a's pooled connections)
            gated = asyncio.ensure_future(cli.echo(Req(message="gate"), callopt.with_host_port(a)))
            await asyncio.wait_for(handler_a.entered.wait(), 5)
            assert transport.pool.idle_count(a) == 3

            resolver.addresses = [b]
            cache = cli.client.discovery.cache
            assert cache is not None
            entry = cache.entry("echo")
            change = await entry.refresh()
            assert change is not None and [i.address for i in change.removed] == [a]
            assert cli.client.discovery.evicted == [a]

            # a's idle connections are closed at once; the busy one is still open, and so is b's pool
            assert transport.pool.idle_count(a) == 0
            assert transport.open_connections(a) == 1
            assert transport.pool.idle_count(b) == 4 and transport.open_connections(b) == 4
            await conns_a.until(lambda n: n == 1)  # the server saw three connections close

            handler_a.release.set()
            assert (await asyncio.wait_for(gated, 5)).message == "gate"  # the call itself succeeds
            # released, it is closed rather than pooled
            assert transport.pool.idle_count(a) == 0 and transport.open_connections(a) == 0
            await conns_a.until(lambda n: n == 0)

            calls_a = len(handler_a.callers)
            for i in range(6):
                await cli.echo(Req(message=f"b{i}"))
            assert len(handler_a.callers) == calls_a  # only b is picked now
            assert len(conns_b) == 4  # b's pooled connections were reused


async def test_an_address_that_comes_back_is_pooled_again() -> None:
    async with ttheader_instances(1) as ((a, _, conns_a),):
        resolver = MutableResolver(a)
        cli = new_client(resolver)
        async with cli:
            transport: Any = cli.client._transport
            await cli.echo(Req(message="x"))
            await transport.close_address(a)
            assert transport.open_connections(a) == 0
            await conns_a.until(lambda n: n == 0)
            await cli.echo(Req(message="y"))  # a new connection; not retired
            assert transport.pool.idle_count(a) == 1


async def test_warm_up_pre_dials_min_idle_connections_into_the_pool() -> None:
    async with ttheader_instances(2) as ((a, _, conns_a), (b, _, conns_b)):
        resolver = MutableResolver(a, b)
        cli = new_client(
            resolver,
            client.with_long_connection(min_idle_per_address=3, max_idle_per_address=4),
            client.with_warming_up(WarmUpOption(error_handling="fail_fast")),
        )
        async with cli:
            await cli.client.warm_up()
            transport: Any = cli.client._transport
            assert transport.pool.idle_count(a) == 3 and transport.pool.idle_count(b) == 3
            await conns_a.until(lambda n: n == 3)
            await conns_b.until(lambda n: n == 3)

            # the calls that follow use the pre-dialled connections: no new connection to either server
            for i in range(6):
                await cli.echo(Req(message=str(i)))
            assert len(conns_a) == 3 and len(conns_b) == 3

            # an explicit count is capped by max_idle_per_address (4 idle at most)
            await transport.preconnect(a, 1.0, 10)
            assert transport.pool.idle_count(a) == 4
            await conns_a.until(lambda n: n == 4)
            await transport.preconnect(a, 1.0, 2)  # no room left: nothing dialled
            assert transport.pool.idle_count(a) == 4 and transport.open_connections(a) == 4


async def test_preconnect_to_a_dead_address_fails_within_the_connect_timeout() -> None:
    dead = f"127.0.0.1:{free_port()}"
    cli = new_client(MutableResolver(dead))
    async with cli:
        transport: Any = cli.client._transport
        with pytest.raises(GetConnectionError):
            await asyncio.wait_for(transport.preconnect(dead, 1.0, 2), 5)
        assert transport.pool.idle_count(dead) == 0 and transport.open_connections(dead) == 0


async def test_warm_up_conn_num_sets_connections_per_instance() -> None:
    """WarmUpOption.conn_num is Kitex's PoolOption.ConnNum: that many connections per instance."""
    async with ttheader_instances(1) as ((a, _, conns_a),):
        cli = new_client(
            MutableResolver(a),
            client.with_long_connection(max_idle_per_address=8),
            client.with_warming_up(WarmUpOption(error_handling="fail_fast", conn_num=5)),
        )
        async with cli:
            await cli.client.warm_up()
            transport: Any = cli.client._transport
            assert transport.pool.idle_count(a) == 5
            await conns_a.until(lambda n: n == 5)
    with pytest.raises(ValueError, match="conn_num"):
        WarmUpOption(conn_num=-1)
