"""etcd registry and resolver against a real etcd: registry-etcd's layout, lease expiry after SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import client, server
from kitex_grpc.discovery.etcd import EtcdClient, EtcdRegistry, EtcdResolver
from kitex_grpc.discovery.registry import Info
from kitex_grpc.errors import GetConnectionError, ServiceDiscoveryError
from tests.config.helpers import until
from tests.config.proxy import Relay
from tests.discovery.helpers import free_port, processes
from tests.support import Req, serve

pytestmark = pytest.mark.etcd


async def test_register_writes_registry_etcd_layout_and_deregister_deletes(etcd: str) -> None:
    etcd_client = EtcdClient([etcd])
    registry = EtcdRegistry([etcd], ttl=5)
    try:
        async with serve(server.with_registry(registry), server.with_server_basic_info("echo")) as (svr, _):
            key = f"kitex/registry-etcd/echo/{svr.address}"
            value = await etcd_client.get(key)
            assert value is not None
            # the exact bytes Go's json.Marshal writes for registry-etcd's instanceInfo
            assert value.decode() == f'{{"network":"tcp","address":"{svr.address}","weight":10,"tags":null}}'
            assert list(json.loads(value)) == ["network", "address", "weight", "tags"]
        # stop() deregistered first: the key is gone at once, not after the lease TTL
        assert await etcd_client.get(key) is None
    finally:
        await registry.close()
        await etcd_client.close()


async def test_resolver_finds_servers_and_watch_applies_changes(etcd: str) -> None:
    registry = EtcdRegistry([etcd], ttl=5)
    resolver = EtcdResolver([etcd])
    try:
        with pytest.raises(ServiceDiscoveryError):
            await resolver.resolve("echo")  # registry-etcd fails on an empty list
        opts = (server.with_registry(registry), server.with_server_basic_info("echo"))
        async with serve(*opts) as (a, sa), serve(*opts) as (b, sb):
            # a 60 s refresh: only the etcd watch can bring the second instance in quickly
            cli = echo_kitex.new_client(
                "echo",
                client.with_resolver(resolver),
                client.with_load_balancer(_rr(), refresh_interval=60),
            )
            async with cli:
                for _ in range(10):
                    await cli.Unary(Req(message="x"))
                found = {i.address for i in (await resolver.resolve("echo")).instances}
                assert found == {a.address, b.address}
            assert sa.calls + sb.calls == 10
        await registry.register(Info("echo", "127.0.0.1:1", tags={"env": "test"}))
        result = await resolver.resolve("echo")
        assert [(i.address, i.tags) for i in result.instances] == [("127.0.0.1:1", {"env": "test"})]
    finally:
        await registry.close()
        await resolver.close()


def _rr() -> Any:
    from kitex_grpc.discovery import WeightedRoundRobinBalancer

    return WeightedRoundRobinBalancer()


async def test_lease_expires_after_sigkill_and_clients_stop_routing_there(etcd: str) -> None:
    resolver = EtcdResolver([etcd])
    async with processes(3, "--etcd", etcd, "--ttl", "2", "--service", "echo") as procs:
        cli = echo_kitex.new_client(
            "echo",
            client.with_resolver(resolver),
            client.with_load_balancer(_rr(), refresh_interval=0.5),
            client.with_rpc_timeout(2),
        )
        async with cli:
            for _ in range(30):
                await cli.Unary(Req(message="x"))
            victim = procs[0]
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            victim.kill()
            # bounded: the 2 s lease must expire and the watch/refresh apply it well within 15 s
            for _ in range(300):
                if victim.address in cli.client.discovery.evicted:
                    break
                with contextlib.suppress(Exception):
                    await cli.Unary(Req(message="x"))
                await asyncio.sleep(0.05)
            gone_after = loop.time() - killed_at
            print(f"etcd: instance evicted {gone_after:.2f}s after SIGKILL (lease TTL 2 s)")
            assert victim.address in cli.client.discovery.evicted
            keys = [i.address for i in (await resolver.resolve("echo")).instances]
            assert victim.address not in keys and len(keys) == 2
            for _ in range(30):  # no call goes to the dead instance any more
                await cli.Unary(Req(message="x"))
    await resolver.close()


async def test_etcd_down_is_a_connection_error() -> None:
    down = EtcdClient([f"127.0.0.1:{free_port()}"], connect_timeout=0.3)
    registry = EtcdRegistry([f"127.0.0.1:{free_port()}"], ttl=5)
    try:
        with pytest.raises(GetConnectionError):
            await down.get("k")
        with pytest.raises(GetConnectionError):
            await down.watch_prefix("p/", lambda: None)
        with pytest.raises(GetConnectionError):
            await registry.register(Info("echo", "127.0.0.1:1"))
    finally:
        await registry.close()
        await down.close()


async def test_a_lease_lost_while_etcd_was_away_is_granted_again(etcd: str) -> None:
    admin = EtcdClient([etcd])
    relay = Relay(etcd)
    await relay.start()
    registry = EtcdRegistry([relay.address], ttl=2, retry_delay=0.2)
    key = "kitex/registry-etcd/echo/127.0.0.1:1"
    try:
        await registry.register(Info("echo", "127.0.0.1:1"))
        assert await admin.get(key) is not None
        relay.cut()  # the keep-alive stream breaks and cannot reconnect: the 2 s lease expires

        async def gone() -> bool:
            return await admin.get(key) is None

        await until(gone, seconds=15)
        relay.restore()  # the keep-alive finds the lease gone (TTL 0): a new lease, the key put again

        async def back() -> bool:
            return await admin.get(key) is not None

        await until(back, seconds=15)
        # and the new lease is kept alive: the key outlives several TTLs
        for _ in range(3):
            await asyncio.sleep(1)  # the lease's own clock: nothing to wait on instead
            assert await admin.get(key) is not None
    finally:
        await registry.close()
        await relay.close()
        await admin.close()
