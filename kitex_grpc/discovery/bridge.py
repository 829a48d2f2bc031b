"""The bridge between discovery and the transports: the client's ``discovery`` middleware.

Per call (Kitex ``client/middlewares.go newResolveMWBuilder``): an address already set by
``callopt.with_host_port`` wins; otherwise the target's cache gives the current result, the balancer
gives one picker, and the picker's instance becomes ``ri.callee.address``. A
:class:`~kitex_grpc.errors.GetConnectionError` or an instance circuit break re-picks, up to
:data:`MAX_REPICKS` times (Kitex re-picks on ``ErrGetConnection``/``ErrCircuitBreak``); a picker that
runs dry raises :class:`~kitex_grpc.errors.NoMoreInstanceError`; once every instance has failed to
connect, the last connect error is raised.

Transports keep one connection (grpcio channel, h2 connection, TTHeader pool) per address and create
it on first use; when an instance leaves the resolver's result the bridge calls the transport's
optional ``close_address(address)`` (see :mod:`kitex_grpc.transport.base`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kitex_grpc.discovery.balancer import LoadBalancer
from kitex_grpc.discovery.cache import CacheOptions, DiscoveryCache, TargetCache
from kitex_grpc.discovery.resolver import Instance, Resolver
from kitex_grpc.errors import (
    GetConnectionError,
    InstanceCircuitBreakError,
    NoMoreInstanceError,
    ServiceDiscoveryError,
)
from kitex_grpc.rpcinfo import AVOID_KEY

if TYPE_CHECKING:
    from kitex_grpc.endpoint import Endpoint
    from kitex_grpc.rpcinfo import EndpointInfo, RPCInfo

MAX_REPICKS = 6
"""How many times one call re-picks after a connect failure or an instance circuit break."""


_REPICK = (GetConnectionError, InstanceCircuitBreakError)


class Discovery:
    """Resolver + balancer + cache for one client, and the ``discovery`` middleware over them."""

    def __init__(
        self,
        resolver: Resolver | None,
        balancer: LoadBalancer,
        options: CacheOptions,
        transport: object,
    ) -> None:
        self.resolver = resolver
        self.balancer = balancer
        self._close_address: Callable[[str], Awaitable[None]] | None = getattr(
            transport, "close_address", None
        )
        self._preconnect: Callable[..., Awaitable[None]] | None = getattr(transport, "preconnect", None)
        self._removal_listeners: list[Callable[[str], None]] = []
        self.cache = (
            DiscoveryCache(resolver, balancer, options, self._removed) if resolver is not None else None
        )
        self.evicted: list[str] = []

    def add_removal_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(address)`` when an instance leaves (e.g. to drop its circuit breaker)."""
        self._removal_listeners.append(listener)

    async def _removed(self, instances: tuple[Instance, ...]) -> None:
        for ins in instances:
            self.evicted.append(ins.address)
            for listener in self._removal_listeners:
                listener(ins.address)
            if self._close_address is not None:
                await self._close_address(ins.address)

    def _entry(self, callee: EndpointInfo) -> TargetCache:
        if self.cache is None:
            raise ServiceDiscoveryError(
                f"no resolver and no host ports for service {callee.service_name!r}:"
                " use client.with_host_ports(...), client.with_resolver(...) or callopt.with_host_port(...)"
            )
        return self.cache.entry(self.cache.resolver.target(callee))

    def middleware(self, next_endpoint: Endpoint) -> Endpoint:
        def discovery(ri: RPCInfo, request: Any) -> Awaitable[Any]:
            if ri.callee.address:  # picked already (callopt.with_host_port): the next awaitable as is
                return next_endpoint(ri, request)
            entry = self._entry(ri.callee)
            result = entry.result
            if result is not None and len(result.instances) == 1:
                # One instance: a failed attempt has nowhere else to go (pick_and_call would re-raise
                # it), so the call is the next awaitable as is, with no discovery frame around it.
                ins = entry.balancer.get_picker(result).next(ri, request)
                if ins is not None:
                    ri.callee.address = ins.address
                    if ins.tags:
                        ri.callee.tags = {**ins.tags, **ri.callee.tags}
                    return next_endpoint(ri, request)
            return pick_and_call(ri, request)

        async def pick_and_call(ri: RPCInfo, request: Any) -> Any:
            entry = self._entry(ri.callee)
            result = await entry.get()
            picker = entry.balancer.get_picker(result)
            avoid: set[str] = ri.extra.get(AVOID_KEY) or set()
            skipped: list[Instance] = []
            last_error: BaseException | None = None
            picks = 0
            tried: set[str] = set()
            # bounded: each pass either skips an avoided instance (at most len(instances) times) or
            # makes an attempt (at most 1 + MAX_REPICKS times)
            for _ in range(len(result.instances) + 1 + MAX_REPICKS):
                ins = picker.next(ri, request)
                if ins is None and skipped:
                    ins = skipped.pop(0)
                    avoid = set()
                if ins is None:
                    raise NoMoreInstanceError(
                        f"no instance of {ri.callee.service_name!r} left to pick"
                        + (f"; last error: {last_error}" if last_error else "")
                    ) from last_error
                if ins.address in avoid and len(skipped) < len(result.instances):
                    skipped.append(ins)
                    continue
                ri.callee.address = ins.address
                ri.callee.tags = {**ins.tags, **ri.callee.tags} if ins.tags else ri.callee.tags
                try:
                    return await next_endpoint(ri, request)
                except _REPICK as exc:
                    picks += 1
                    tried.add(ins.address)
                    if picks > MAX_REPICKS or len(tried) >= len(result.instances):
                        raise  # every instance failed: the connect error says more than "no more"
                    last_error = exc
                    avoid = avoid | {ins.address}
                    ri.callee.address = ""
            raise NoMoreInstanceError(f"gave up picking an instance; last error: {last_error}")

        return discovery

    async def warm_up(
        self, callee: EndpointInfo, connect: bool, connect_timeout: float, conns: int = 0
    ) -> list[str]:
        """Resolve ``callee``'s target now and, with ``connect``, open connections to every instance
        (``conns`` per instance on pooled transports; 0 = the transport's default).

        Returns the addresses it connected to. Errors propagate (the caller decides how to report).
        """
        entry = self._entry(callee)
        result = await entry.get()
        addresses = [ins.address for ins in result.instances if ins.weight > 0]
        if connect and self._preconnect is not None:
            preconnect = self._preconnect
            if conns:
                await asyncio.gather(*(preconnect(a, connect_timeout, conns) for a in addresses))
            else:
                await asyncio.gather(*(preconnect(a, connect_timeout) for a in addresses))
            return addresses
        return []

    async def close(self) -> None:
        if self.cache is not None:
            with contextlib.suppress(Exception):
                await self.cache.close()
