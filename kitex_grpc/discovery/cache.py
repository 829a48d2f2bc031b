"""The discovery cache (Kitex ``pkg/loadbalance/lbcache/cache.go``).

One :class:`TargetCache` per resolver target. The first call resolves (single-flight: concurrent first
calls share one resolution); afterwards a background task re-resolves every ``refresh_interval``
(5 s, Kitex's ``RefreshInterval``) and at once when the resolver's optional ``watch`` says so. A
failed resolution keeps the last good result. A change is applied in two steps, bookkeeping then
I/O: :meth:`TargetCache.apply` (pure, synchronous) swaps the result and rebalances the balancer;
afterwards the removed instances are handed to ``on_removed``, which closes their connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kitex_grpc.discovery.balancer import LoadBalancer
from kitex_grpc.discovery.resolver import Change, Instance, Resolver, Result
from kitex_grpc.errors import KitexError, ServiceDiscoveryError

_log = logging.getLogger("kitex_grpc.discovery")

DEFAULT_REFRESH_INTERVAL = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class CacheOptions:
    """Kitex ``lbcache.Options``: how often a target is re-resolved (seconds)."""

    refresh_interval: float = DEFAULT_REFRESH_INTERVAL


RemovedHook = Callable[[tuple[Instance, ...]], Awaitable[None]]


class TargetCache:
    """The resolved instances of one target, and the balancer state built over them."""

    def __init__(
        self,
        resolver: Resolver,
        balancer: LoadBalancer,
        target: str,
        options: CacheOptions,
        on_removed: RemovedHook,
    ) -> None:
        self.resolver = resolver
        self.balancer = balancer
        self.target = target
        self.result: Result | None = None
        self.refreshes = 0
        self.resolve_errors = 0
        self._options = options
        self._on_removed = on_removed
        self._first: asyncio.Future[Result] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    async def get(self) -> Result:
        """The current result; the first caller resolves, concurrent callers wait for that one."""
        if self.result is not None:
            return self.result
        if self._first is None:
            self._first = asyncio.ensure_future(self._resolve_first())
        # shield: a caller timing out must not cancel the resolution the others wait for
        return await asyncio.shield(self._first)

    async def _resolve_first(self) -> Result:
        try:
            result = self._keyed(await self.resolver.resolve(self.target))
        except KitexError as exc:
            self._first = None
            raise ServiceDiscoveryError(f"resolve {self.target!r}: {exc}").with_cause(exc) from exc
        except Exception as exc:
            self._first = None
            raise ServiceDiscoveryError(f"resolve {self.target!r}: {exc!r}").with_cause(exc) from exc
        if self.result is None:
            self.result = result
        self._start_background()
        return self.result

    def _keyed(self, result: Result) -> Result:
        # Kitex prefixes the cache key with the resolver name so resolvers never share balancer state.
        return dataclasses.replace(result, cache_key=f"{self.resolver.name}:{result.cache_key}")

    def apply(self, new: Result) -> Change | None:
        """Bookkeeping only: diff ``new`` against the current result, swap it in and rebalance.

        Returns the change (its ``removed`` instances still need their connections closed), or
        ``None`` when nothing changed.
        """
        new = self._keyed(new)
        prev = self.result
        if prev is None:
            self.result = new
            return None
        change, changed = self.resolver.diff(new.cache_key, prev, new)
        if not changed:
            return None
        self.result = change.result
        rebalance = getattr(self.balancer, "rebalance", None)
        if rebalance is not None:
            rebalance(change)
        return change

    async def refresh(self) -> Change | None:
        """Re-resolve once; on failure keep the last good result. Closes removed instances."""
        self.refreshes += 1
        try:
            new = await self.resolver.resolve(self.target)
        except Exception as exc:
            self.resolve_errors += 1
            _log.warning("discovery: resolving %r failed, keeping the last result: %r", self.target, exc)
            return None
        change = self.apply(new)
        if change is not None and change.removed:
            await self._on_removed(change.removed)
        return change

    def _start_background(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.ensure_future(self._refresh_loop()))
        watch: Callable[[str, Callable[[], None]], Awaitable[None]] | None = getattr(
            self.resolver, "watch", None
        )
        if watch is not None:
            self._tasks.append(asyncio.ensure_future(self._watch_loop(watch)))

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._options.refresh_interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.refresh()

    async def _watch_loop(self, watch: Callable[[str, Callable[[], None]], Awaitable[None]]) -> None:
        while True:
            try:
                await watch(self.target, self._wake.set)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("discovery: watching %r failed: %r", self.target, exc)
            # a watch that ended or failed is restarted after one refresh interval
            await asyncio.sleep(self._options.refresh_interval)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        delete = getattr(self.balancer, "delete", None)
        if delete is not None and self.result is not None:
            delete(Change(self.result))


class DiscoveryCache:
    """The per-client set of :class:`TargetCache` entries, one per target."""

    def __init__(
        self, resolver: Resolver, balancer: LoadBalancer, options: CacheOptions, on_removed: RemovedHook
    ) -> None:
        self.resolver = resolver
        self.balancer = balancer
        self._options = options
        self._on_removed = on_removed
        self._targets: dict[str, TargetCache] = {}

    def entry(self, target: str) -> TargetCache:
        cache = self._targets.get(target)
        if cache is None:
            cache = TargetCache(self.resolver, self.balancer, target, self._options, self._on_removed)
            self._targets[target] = cache
        return cache

    def targets(self) -> dict[str, TargetCache]:
        return dict(self._targets)

    async def close(self) -> None:
        targets, self._targets = self._targets, {}
        for cache in targets.values():
            await cache.close()


def describe(cache: TargetCache) -> dict[str, Any]:
    """A snapshot for diagnostics: the target, its instances and refresh counters."""
    instances = cache.result.instances if cache.result is not None else ()
    return {
        "target": cache.target,
        "instances": [i.address for i in instances],
        "refreshes": cache.refreshes,
        "resolve_errors": cache.resolve_errors,
    }
