"""The h2 transports' optional hooks: close_address, preconnect and the pool-size gauge on the client,
limit_connections on the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import callopt, client, server
from kitex_grpc.discovery import WeightedRoundRobinBalancer
from kitex_grpc.errors import GetConnectionError
from kitex_grpc.governance import WarmUpOption
from kitex_grpc.observability import metrics as api
from kitex_grpc.transport.h2.server import H2ServerTransport
from tests.discovery.helpers import free_port
from tests.discovery.test_transport_hooks import MutableResolver
from tests.h2.helpers import H2, h2_client, h2_server, transport_of
from tests.observability.otel_support import OTel
from tests.observability.test_pool_gauges import pool_points
from tests.support import EchoService, Req

Instance = tuple[str, EchoService, H2ServerTransport]


@asynccontextmanager
async def h2_instances(count: int) -> AsyncIterator[list[Instance]]:
    """``count`` h2 Echo servers on 127.0.0.1: (address, handler, server transport)."""
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(count):
            svr, svc, transport = await stack.enter_async_context(h2_server())
            out.append((svr.address, svc, transport))
        yield out


def resolver_client(resolver: MutableResolver, *opts: client.ClientOption) -> echo_kitex.EchoClient:
    # a long refresh interval: the test refreshes the cache itself, when it wants the change seen
    return echo_kitex.new_client(
        "echo",
        client.with_resolver(resolver),
        client.with_transport_protocol(H2),
        client.with_load_balancer(WeightedRoundRobinBalancer(), refresh_interval=60.0),
        *opts,
    )


async def all_closed(transport: H2ServerTransport, seconds: float = 5.0) -> None:
    """Wait until every connection the server transport serves has closed (bounded)."""
    async with asyncio.timeout(seconds):
        while transport.connections:
            await asyncio.wait([conn.done for conn in transport.connections])


async def test_removed_instance_closes_its_connection_after_its_call_finished() -> None:
    async with h2_instances(2) as ((a, svc_a, srv_a), (b, _, srv_b)):
        resolver = MutableResolver(a, b)
        cli = resolver_client(resolver)
        try:
            transport = transport_of(cli)
            replies = await asyncio.gather(*(cli.Unary(Req(seq=i)) for i in range(8)))
            assert sorted(r.seq for r in replies) == list(range(8))
            assert set(transport.connections) == {a, b}
            conn_a = transport.connections[a]

            # one call to a stays in flight while discovery drops a
            gated = asyncio.ensure_future(cli.Unary(Req(message="gate"), callopt.with_host_port(a)))
            await asyncio.wait_for(svc_a.entered.wait(), 5)
            resolver.addresses = [b]
            cache = cli.client.discovery.cache
            assert cache is not None
            change = await cache.entry("echo").refresh()
            assert change is not None and [i.address for i in change.removed] == [a]
            assert cli.client.discovery.evicted == [a]

            # a's connection takes no new call but stays open for the call in flight
            assert a not in transport.connections and b in transport.connections
            assert not conn_a.closed and not conn_a.usable
            assert len(srv_a.connections) == 1

            svc_a.release.set()
            assert (await asyncio.wait_for(gated, 5)).message == "gate"  # the call itself succeeds
            assert conn_a.closed  # closed once its last call ended
            await all_closed(srv_a)

            calls_a = svc_a.calls
            for i in range(4):
                await cli.Unary(Req(seq=i))
            assert svc_a.calls == calls_a  # only b is picked now
            assert len(srv_b.connections) == 1  # b's connection was reused throughout
        finally:
            await cli.close()


async def test_closed_address_dials_again_on_the_next_call() -> None:
    async with h2_server() as (svr, _, srv_transport):
        cli = h2_client(svr.address)
        try:
            transport = transport_of(cli)
            await cli.Unary(Req(message="x"))
            first = transport.connections[svr.address]
            await transport.close_address(svr.address)  # idle: closed at once
            assert first.closed and svr.address not in transport.connections
            await all_closed(srv_transport)
            assert (await cli.Unary(Req(message="y"))).message == "y"
            second = transport.connections[svr.address]
            assert second is not first and second.usable
            await transport.close_address("127.0.0.1:1")  # an address never dialled: nothing happens
        finally:
            await cli.close()


async def test_warm_up_pre_dials_one_connection_per_instance() -> None:
    async with h2_instances(2) as ((a, _, srv_a), (b, _, srv_b)):
        resolver = MutableResolver(a, b)
        cli = resolver_client(resolver, client.with_warming_up(WarmUpOption(error_handling="fail_fast")))
        try:
            await cli.client.warm_up()
            transport = transport_of(cli)
            assert set(transport.connections) == {a, b}
            assert all(conn.usable for conn in transport.connections.values())
            dialled = dict(transport.connections)
            assert len(srv_a.connections) == 1 and len(srv_b.connections) == 1

            # the calls that follow use the pre-dialled connections
            for i in range(6):
                await cli.Unary(Req(seq=i))
            assert transport.connections == dialled
            assert len(srv_a.connections) == 1 and len(srv_b.connections) == 1

            # conns is ignored: one connection multiplexes every call
            await transport.preconnect(a, 1.0, 5)
            assert transport.connections == dialled and len(srv_a.connections) == 1
        finally:
            await cli.close()


async def test_preconnect_to_a_dead_address_fails_with_get_connection_error() -> None:
    cli = h2_client("127.0.0.1:1")
    try:
        with pytest.raises(GetConnectionError):
            await transport_of(cli).preconnect(f"127.0.0.1:{free_port()}", 1.0)
        assert transport_of(cli).connections == {}
    finally:
        await cli.close()


async def test_h2_pool_gauge_counts_connections_per_address() -> None:
    otel = OTel(tracing=False)
    async with h2_instances(2) as ((a, svc_a, _), (b, _, _)):
        ours = (a, b)
        cli = h2_client(a, client.with_suite(otel.suite))
        try:
            transport = transport_of(cli)
            assert pool_points(otel, "grpc_h2", *ours) == {}  # no connection yet
            await asyncio.gather(*(cli.Unary(Req(seq=i)) for i in range(5)))
            assert pool_points(otel, "grpc_h2", *ours) == {a: 1}  # one multiplexed connection
            await cli.Unary(Req(message="b"), callopt.with_host_port(b))
            assert pool_points(otel, "grpc_h2", *ours) == {a: 1, b: 1}

            # a retired connection with a call in flight is still counted until it closes
            gated = asyncio.ensure_future(cli.Unary(Req(message="gate")))
            await asyncio.wait_for(svc_a.entered.wait(), 5)
            await transport.close_address(a)
            assert pool_points(otel, "grpc_h2", *ours) == {a: 1, b: 1}
            svc_a.release.set()
            await asyncio.wait_for(gated, 5)
            assert pool_points(otel, "grpc_h2", *ours) == {b: 1}

            await transport.close_address(b)
            assert pool_points(otel, "grpc_h2", *ours) == {}
            await cli.Unary(Req(message="again"))
            assert pool_points(otel, "grpc_h2", *ours) == {a: 1}
        finally:
            await cli.close()
        # closed: the transport unregistered its callback
        assert pool_points(otel, "grpc_h2", *ours) == {}
        assert all(attrs.get("address") not in ours for attrs, _ in api.pool_sizes())


async def test_max_connections_refuses_exactly_the_excess_connection() -> None:
    reported: list[str] = []
    opts = (server.with_limit(max_connections=2), server.with_limit_reporter(reported.append))
    async with h2_server(*opts) as (svr, _, srv_transport):
        limiter: Any = svr.limiter
        assert limiter is not None and not limiter.count_peers  # the transport counts connections
        first, second = h2_client(svr.address), h2_client(svr.address)
        try:
            # two connections, each counted once however many calls it carries
            for _ in range(3):
                assert (await first.Unary(Req(message="a"))).message == "a"
                assert (await second.Unary(Req(message="b"))).message == "b"
            assert limiter.connections.connections == 2 and len(srv_transport.connections) == 2

            # the third connection is closed before the server sends a byte: the dial fails
            third = h2_client(svr.address)
            try:
                with pytest.raises(GetConnectionError):
                    await third.Unary(Req(message="c"))
            finally:
                await third.close()
            assert limiter.connections.rejected == 1
            # one rejection, seen by the server's stats and its reporter as well
            assert limiter.stats.conn_rejected == 1 and reported == ["connection"]
            assert len(srv_transport.connections) == 2

            # one connection closes; once the server has seen it go, a new connection is served
            gone = [conn.done for conn in srv_transport.connections]
            await first.close()
            await asyncio.wait_for(asyncio.wait(gone, return_when=asyncio.FIRST_COMPLETED), 5)
            assert limiter.connections.connections == 1
            fourth = h2_client(svr.address)
            try:
                assert (await fourth.Unary(Req(message="d"))).message == "d"
                assert limiter.connections.connections == 2
            finally:
                await fourth.close()
            assert (await second.Unary(Req(message="b"))).message == "b"  # untouched throughout
            assert limiter.connections.rejected == 1 and reported == ["connection"]
        finally:
            await first.close()
            await second.close()


async def test_adopted_connections_count_against_the_same_limit() -> None:
    async with h2_server(server.with_limit(max_connections=1)) as (svr, _, srv_transport):
        limiter: Any = svr.limiter
        # another listener hands its connections to this transport (as the TTHeader server's sniffer does)
        adopter = await asyncio.get_running_loop().create_server(
            srv_transport.connection_protocol, "127.0.0.1", 0
        )
        adopted_address = f"127.0.0.1:{adopter.sockets[0].getsockname()[1]}"
        first, over = h2_client(svr.address), h2_client(adopted_address)
        try:
            assert (await first.Unary(Req(message="a"))).message == "a"
            with pytest.raises(GetConnectionError):
                await over.Unary(Req(message="x"))  # adopted, but over the limit: closed unanswered
            assert limiter.connections.rejected == 1 and limiter.stats.conn_rejected == 1

            gone = [conn.done for conn in srv_transport.connections]
            await first.close()
            await asyncio.wait_for(asyncio.wait(gone), 5)
            assert limiter.connections.connections == 0
            assert (await over.Unary(Req(message="b"))).message == "b"  # the adopted one is served now
            assert limiter.connections.connections == 1 and limiter.connections.rejected == 1
        finally:
            await first.close()
            await over.close()
            adopter.close()
