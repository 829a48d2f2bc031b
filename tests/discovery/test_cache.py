"""The discovery cache: single-flight first resolve, keep the last good result, rebalance, close removed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kitex_grpc.discovery import Change, Instance, Result, WeightedRoundRobinBalancer, default_diff
from kitex_grpc.discovery.cache import CacheOptions, TargetCache
from kitex_grpc.errors import ServiceDiscoveryError


class FakeResolver:
    name = "fake"

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    def target(self, endpoint: Any) -> str:
        return "svc"

    async def resolve(self, target: str) -> Result:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("registry down")
        return Result.of(target, [Instance(a) for a in self.addresses])

    def diff(self, cache_key: str, prev: Result, next: Result) -> tuple[Change, bool]:
        return default_diff(cache_key, prev, next)


class RecordingBalancer(WeightedRoundRobinBalancer):
    def __init__(self) -> None:
        super().__init__()
        self.changes: list[Change] = []

    def rebalance(self, change: Change) -> None:
        self.changes.append(change)
        super().rebalance(change)


def test_default_diff() -> None:
    prev = Result.of("k", [Instance("a", 10), Instance("b", 10)])
    nxt = Result.of("k", [Instance("b", 20), Instance("c", 10)])
    change, changed = default_diff("k", prev, nxt)
    assert changed
    assert [i.address for i in change.added] == ["c"]
    assert [i.address for i in change.updated] == ["b"]
    assert [i.address for i in change.removed] == ["a"]
    assert default_diff("k", prev, prev)[1] is False


async def test_first_resolve_is_single_flight_and_failure_is_retried() -> None:
    resolver = FakeResolver("a:1")
    resolver.gate = asyncio.Event()
    removed: list[tuple[Instance, ...]] = []

    async def on_removed(instances: tuple[Instance, ...]) -> None:
        removed.append(instances)

    cache = TargetCache(resolver, RecordingBalancer(), "svc", CacheOptions(60), on_removed)
    getters = [asyncio.ensure_future(cache.get()) for _ in range(10)]
    await asyncio.sleep(0)
    resolver.gate.set()
    results = await asyncio.gather(*getters)
    assert resolver.calls == 1
    assert all(r is results[0] for r in results)
    assert results[0].cache_key == "fake:svc"
    await cache.close()

    failing = FakeResolver("a:1")
    failing.fail = True
    cache = TargetCache(failing, RecordingBalancer(), "svc", CacheOptions(60), on_removed)
    with pytest.raises(ServiceDiscoveryError):
        await cache.get()
    failing.fail = False
    assert (await cache.get()).instances == (Instance("a:1"),)
    await cache.close()


async def test_refresh_keeps_last_good_rebalances_and_closes_removed() -> None:
    resolver = FakeResolver("a:1", "b:1")
    balancer = RecordingBalancer()
    removed: list[str] = []

    async def on_removed(instances: tuple[Instance, ...]) -> None:
        removed.extend(i.address for i in instances)

    cache = TargetCache(resolver, balancer, "svc", CacheOptions(60), on_removed)
    await cache.get()
    resolver.fail = True
    assert await cache.refresh() is None
    assert [i.address for i in (await cache.get()).instances] == ["a:1", "b:1"]
    resolver.fail = False
    resolver.addresses = ["b:1", "c:1"]
    change = await cache.refresh()
    assert change is not None and balancer.changes == [change]
    assert [i.address for i in (await cache.get()).instances] == ["b:1", "c:1"]
    assert removed == ["a:1"]
    assert cache.resolve_errors == 1
    await cache.close()


async def test_periodic_refresh_and_watch_notifications() -> None:
    resolver = FakeResolver("a:1")
    notified = asyncio.Event()
    wake: list[Any] = []

    async def watch(target: str, notify: Any) -> None:
        wake.append(notify)
        notified.set()
        await asyncio.Event().wait()

    resolver.watch = watch  # type: ignore[attr-defined]

    async def on_removed(instances: tuple[Instance, ...]) -> None:
        return None

    cache = TargetCache(resolver, RecordingBalancer(), "svc", CacheOptions(60), on_removed)
    await cache.get()
    await asyncio.wait_for(notified.wait(), 5)
    resolver.addresses = ["b:1"]
    wake[0]()  # the watch says something changed: the cache re-resolves now, not in 60 s
    for _ in range(200):
        if cache.result is not None and cache.result.instances == (Instance("b:1"),):
            break
        await asyncio.sleep(0.01)
    assert cache.result is not None and cache.result.instances == (Instance("b:1"),)
    await cache.close()
