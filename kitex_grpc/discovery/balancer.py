"""Load balancers (Kitex ``pkg/loadbalance``): smooth weighted round robin (the default), weighted
random and consistent hashing.

A balancer is any object with ``get_picker(result) -> Picker`` and ``name``; it may also define
``rebalance(change)`` and ``delete(change)`` (Kitex ``Rebalancer``), which the discovery cache calls
when a target's instances change or the target is dropped. A picker's ``next(ri, request)`` returns
the next :class:`Instance` to try, or ``None`` when it has nothing more: the bridge asks for one
picker per call and calls ``next`` again only to re-pick after a connect failure.

Instances with weight <= 0 are dropped, as Kitex does.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kitex_grpc.discovery.resolver import Change, Instance, Result

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo


@runtime_checkable
class Picker(Protocol):
    """Kitex ``loadbalance.Picker``."""

    def next(self, ri: RPCInfo, request: Any) -> Instance | None: ...


@runtime_checkable
class LoadBalancer(Protocol):
    """Kitex ``loadbalance.Loadbalancer``: a plain class with these two members is a balancer."""

    @property
    def name(self) -> str: ...

    def get_picker(self, result: Result) -> Picker: ...


class _EmptyPicker:
    """Kitex ``DummyPicker``: no instances, so the bridge raises NoMoreInstanceError."""

    def next(self, ri: RPCInfo, request: Any) -> Instance | None:
        return None


EMPTY_PICKER: Picker = _EmptyPicker()


def _usable(instances: Sequence[Instance]) -> tuple[Instance, ...]:
    return tuple(i for i in instances if i.weight > 0)


class _SmoothWRR:
    """Nginx's smooth weighted round robin over fixed instances (shared by every call of a target)."""

    __slots__ = ("_current", "_instances", "_total", "_weights")

    def __init__(self, instances: tuple[Instance, ...]) -> None:
        self._instances = instances
        self._weights = [i.weight for i in instances]
        self._current = [0] * len(instances)
        self._total = sum(self._weights)

    def pick(self) -> Instance:
        best = 0
        current = self._current
        for idx, weight in enumerate(self._weights):
            current[idx] += weight
            if current[idx] > current[best]:
                best = idx
        current[best] -= self._total
        return self._instances[best]


class _WRRPicker:
    __slots__ = ("_state",)

    def __init__(self, state: _SmoothWRR) -> None:
        self._state = state

    def next(self, ri: RPCInfo, request: Any) -> Instance | None:
        return self._state.pick()


class WeightedRoundRobinBalancer:
    """Smooth weighted round robin (Kitex ``NewWeightedBalancer``, the default); plain round robin
    when all weights are equal. The rotation state is kept per cache key so calls share it."""

    name = "weight_round_robin"

    def __init__(self) -> None:
        self._states: dict[str, _SmoothWRR] = {}

    def get_picker(self, result: Result) -> Picker:
        state = self._states.get(result.cache_key) if result.cacheable else None
        if state is None:
            instances = _usable(result.instances)
            if not instances:
                return EMPTY_PICKER
            state = _SmoothWRR(instances)
            if result.cacheable:
                self._states[result.cache_key] = state
        return _WRRPicker(state)

    def rebalance(self, change: Change) -> None:
        self._states.pop(change.result.cache_key, None)

    def delete(self, change: Change) -> None:
        self._states.pop(change.result.cache_key, None)


class _RandomPicker:
    __slots__ = ("_instances", "_rng", "_weights")

    def __init__(self, instances: tuple[Instance, ...], rng: random.Random) -> None:
        self._instances = instances
        self._weights = [i.weight for i in instances]
        self._rng = rng

    def next(self, ri: RPCInfo, request: Any) -> Instance | None:
        return self._rng.choices(self._instances, self._weights)[0]


class WeightedRandomBalancer:
    """Weighted random choice (Kitex ``NewWeightedRandomBalancer``); uniform when weights are equal."""

    name = "weight_random"

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def get_picker(self, result: Result) -> Picker:
        instances = _usable(result.instances)
        return _RandomPicker(instances, self._rng) if instances else EMPTY_PICKER


KeyFunc = Callable[["RPCInfo", Any], str]


def hash64(data: str) -> int:
    """The ring hash: 64 bits of BLAKE2b. Kitex uses Go's per-process seeded maphash, so node choice
    is not reproducible across processes there; here it is stable."""
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "big")


class _Ring:
    __slots__ = ("hashes", "instances", "owners")

    def __init__(self, instances: tuple[Instance, ...], virtual_factor: int, weighted: bool) -> None:
        points: list[tuple[int, int]] = []
        for idx, ins in enumerate(instances):
            count = virtual_factor * (ins.weight if weighted else 1)
            points.extend((hash64(f"{ins.address}#{v}"), idx) for v in range(max(1, count)))
        points.sort()
        self.hashes = [h for h, _ in points]
        self.owners = [idx for _, idx in points]
        self.instances = instances

    def walk(self, key: str, count: int) -> list[Instance]:
        """The first ``count`` distinct instances clockwise from ``key``'s point."""
        start = bisect.bisect_left(self.hashes, hash64(key))
        seen: list[int] = []
        n = len(self.hashes)
        for step in range(n):
            owner = self.owners[(start + step) % n]
            if owner not in seen:
                seen.append(owner)
                if len(seen) == count:
                    break
        return [self.instances[i] for i in seen]


class _ConsistentPicker:
    __slots__ = ("_balancer", "_candidates", "_ring")

    def __init__(self, ring: _Ring, balancer: ConsistentHashBalancer) -> None:
        self._ring = ring
        self._balancer = balancer
        self._candidates: list[Instance] | None = None

    def next(self, ri: RPCInfo, request: Any) -> Instance | None:
        if self._candidates is None:
            key = self._balancer.key_func(ri, request)
            self._candidates = self._ring.walk(key, 1 + self._balancer.replicas)
        return self._candidates.pop(0) if self._candidates else None


class ConsistentHashBalancer:
    """Consistent hashing on a key of the call (Kitex ``NewConsistBalancer``).

    ``key_func(ri, request)`` gives the key. Each instance gets ``virtual_factor`` points on the ring
    (times its weight when ``weighted``, Kitex's default). The first pick is the key's owner; up to
    ``replicas`` further distinct instances, clockwise, are used when the bridge re-picks after a
    connect failure. Defaults are Kitex's ``NewConsistentHashOption``: Replica 0, VirtualFactor 100,
    Weighted true.
    """

    name = "consist"

    def __init__(
        self, key_func: KeyFunc, *, replicas: int = 0, virtual_factor: int = 100, weighted: bool = True
    ) -> None:
        if not callable(key_func):
            raise TypeError("ConsistentHashBalancer: key_func must be callable")
        if replicas < 0 or virtual_factor <= 0:
            raise ValueError("ConsistentHashBalancer: replicas >= 0 and virtual_factor > 0 are required")
        self.key_func = key_func
        self.replicas = replicas
        self.virtual_factor = virtual_factor
        self.weighted = weighted
        self._rings: dict[str, _Ring] = {}

    def get_picker(self, result: Result) -> Picker:
        ring = self._rings.get(result.cache_key) if result.cacheable else None
        if ring is None:
            instances = _usable(result.instances)
            if not instances:
                return EMPTY_PICKER
            ring = _Ring(instances, self.virtual_factor, self.weighted)
            if result.cacheable:
                self._rings[result.cache_key] = ring
        return _ConsistentPicker(ring, self)

    def rebalance(self, change: Change) -> None:
        self._rings.pop(change.result.cache_key, None)

    def delete(self, change: Change) -> None:
        self._rings.pop(change.result.cache_key, None)


DEFAULT_BALANCER_FACTORY: Callable[[], LoadBalancer] = WeightedRoundRobinBalancer
