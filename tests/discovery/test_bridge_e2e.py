"""The bridge over real servers on loopback: balancing, re-pick on connect failure, eviction, warm-up."""

from __future__ import annotations

import collections
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import callopt, client
from kitex_grpc.discovery import (
    Change,
    ConsistentHashBalancer,
    DNSResolver,
    Instance,
    Result,
    default_diff,
)
from kitex_grpc.errors import GetConnectionError, NoMoreInstanceError, ServiceDiscoveryError
from kitex_grpc.governance import WarmUpOption
from tests.discovery.helpers import free_port, instances
from tests.support import Req


class MutableResolver:
    name = "mutable"

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)

    def target(self, endpoint: Any) -> str:
        return endpoint.service_name

    async def resolve(self, target: str) -> Result:
        return Result.of(target, [Instance(a) for a in self.addresses])

    def diff(self, cache_key: str, prev: Result, next: Result) -> tuple[Change, bool]:
        return default_diff(cache_key, prev, next)


def addresses_seen(services: list[Any]) -> list[int]:
    return [svc.calls for _, svc in services]


async def test_round_robin_over_three_instances() -> None:
    async with instances(3) as started:
        cli = echo_kitex.new_client("echo", client.with_host_ports(*(s.address for s, _ in started)))
        async with cli:
            for _ in range(30):
                await cli.Unary(Req(message="x"))
        assert addresses_seen(started) == [10, 10, 10]


async def test_connect_failure_repicks_and_dry_picker_raises() -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with instances(1) as started:
        live = started[0][0].address
        cli = echo_kitex.new_client("echo", client.with_host_ports(dead, live))
        async with cli:
            for _ in range(6):
                await cli.Unary(Req(message="x"))  # every call lands, the dead one is re-picked away
        assert started[0][1].calls == 6
    cli = echo_kitex.new_client("echo", client.with_host_ports(dead))
    async with cli:
        with pytest.raises(GetConnectionError):
            await cli.Unary(Req())
    cli = echo_kitex.new_client("echo", client.with_resolver(MutableResolver()))
    async with cli:
        with pytest.raises(NoMoreInstanceError):  # a resolver result with no instance
            await cli.Unary(Req())


async def test_resolver_drops_instance_and_its_connection_is_closed() -> None:
    async with instances(2) as started:
        a, b = (s.address for s, _ in started)
        resolver = MutableResolver(a, b)
        cli = echo_kitex.new_client(
            "echo",
            client.with_resolver(resolver),
            client.with_load_balancer(
                ConsistentHashBalancer(lambda ri, req: req.message), refresh_interval=0.05
            ),
        )
        async with cli:
            for i in range(20):
                await cli.Unary(Req(message=str(i)))
            transport: Any = cli.client._transport
            assert set(transport._channels) == {a, b}
            resolver.addresses = [b]
            for _ in range(200):  # bounded wait for the 50 ms refresh to apply the change
                if cli.client.discovery.evicted:
                    break
                await _tick()
            assert cli.client.discovery.evicted == [a]
            assert set(transport._channels) == {b}
            before = started[0][1].calls
            for i in range(20):
                await cli.Unary(Req(message=str(i)))
            assert started[0][1].calls == before


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.01)


async def test_dns_resolver_and_warm_up_preconnects() -> None:
    async with instances(1) as started:
        port = started[0][0].address.rsplit(":", 1)[1]
        cli = echo_kitex.new_client(
            f"localhost:{port}",
            client.with_resolver(DNSResolver()),
            client.with_warming_up(WarmUpOption(error_handling="fail_fast")),
        )
        async with cli:
            await cli.client.warm_up()
            transport: Any = cli.client._transport
            assert any(a.endswith(f":{port}") for a in transport._ready)
            result = await cli.client.discovery.cache.entry(f"localhost:{port}").get()  # type: ignore[union-attr]
            assert any(i.address == f"127.0.0.1:{port}" for i in result.instances)
            reply = await cli.Unary(Req(message="dns"), callopt.with_rpc_timeout(5))
            assert reply.message == "dns"


async def test_no_resolver_is_a_discovery_error_and_host_port_callopt_bypasses() -> None:
    async with instances(1) as started:
        cli = echo_kitex.new_client("echo")
        async with cli:
            with pytest.raises(ServiceDiscoveryError):
                await cli.Unary(Req())
            reply = await cli.Unary(Req(message="direct"), callopt.with_host_port(started[0][0].address))
            assert reply.message == "direct"


async def test_weighted_instances_get_traffic_by_weight() -> None:
    async with instances(2) as started:
        a, b = (s.address for s, _ in started)

        class Weighted(MutableResolver):
            async def resolve(self, target: str) -> Result:
                return Result.of(target, [Instance(a, 10), Instance(b, 30)])

        cli = echo_kitex.new_client("echo", client.with_resolver(Weighted()))
        async with cli:
            for _ in range(40):
                await cli.Unary(Req())
        assert collections.Counter(addresses_seen(started)) == collections.Counter([10, 30])
