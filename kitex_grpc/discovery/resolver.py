"""Discovery vocabulary: Instance, Result, Change and the Resolver protocol (Kitex ``pkg/discovery``).

A :class:`Resolver` turns a target (normally the destination service name) into a :class:`Result`:
the instances to balance over. :func:`default_diff` compares two results by address (a weight change
is an update; tag changes are ignored, as Kitex's ``DefaultDiff`` does, FIXME there included).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import EndpointInfo

DEFAULT_WEIGHT = 10
"""Kitex ``discovery.DefaultWeight``."""


@dataclasses.dataclass(frozen=True, slots=True)
class Instance:
    """One callable instance: ``host:port``, a weight (default 10) and string tags.

    Equality and hashing use the address and weight only (Kitex's diff ignores tags).
    """

    address: str
    weight: int = DEFAULT_WEIGHT
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, hash=False)
    network: str = "tcp"

    def tag(self, key: str) -> str | None:
        """The value of tag ``key``, or ``None`` (Kitex ``Instance.Tag``)."""
        return self.tags.get(key)


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """What a resolver found (Kitex ``discovery.Result``).

    ``cacheable`` results are shared by balancers under ``cache_key``.
    """

    cacheable: bool
    cache_key: str
    instances: tuple[Instance, ...]

    @classmethod
    def of(cls, cache_key: str, instances: Sequence[Instance], cacheable: bool = True) -> Result:
        return cls(cacheable, cache_key, tuple(instances))


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """The difference between two results of one target (Kitex ``discovery.Change``)."""

    result: Result
    added: tuple[Instance, ...] = ()
    updated: tuple[Instance, ...] = ()
    removed: tuple[Instance, ...] = ()


@runtime_checkable
class Resolver(Protocol):
    """Service discovery (Kitex ``discovery.Resolver``).

    - ``target(endpoint)``: the description to resolve for a callee (usually its service name); one
      balancer and one cache entry are kept per target.
    - ``resolve(target)``: the instances; raising keeps the previous result in the cache.
    - ``diff(cache_key, prev, next)``: the change and whether anything changed
      (:func:`default_diff` suits nearly every resolver).
    - ``name``: a stable name, used in cache keys.

    A resolver may also define ``async watch(target, notify)`` which runs until cancelled and calls
    ``notify()`` whenever the target's instances may have changed; the cache then re-resolves at once.
    """

    @property
    def name(self) -> str: ...

    def target(self, endpoint: EndpointInfo) -> str: ...

    async def resolve(self, target: str) -> Result: ...

    def diff(self, cache_key: str, prev: Result, next: Result) -> tuple[Change, bool]: ...


def default_diff(cache_key: str, prev: Result, next: Result) -> tuple[Change, bool]:
    """Kitex ``discovery.DefaultDiff``: compare by address; a new weight counts as updated."""
    before = {ins.address: ins for ins in prev.instances}
    after = {ins.address: ins for ins in next.instances}
    added = tuple(ins for addr, ins in after.items() if addr not in before)
    updated = tuple(
        ins for addr, ins in after.items() if addr in before and before[addr].weight != ins.weight
    )
    removed = tuple(ins for addr, ins in before.items() if addr not in after)
    change = Change(Result(next.cacheable, cache_key, next.instances), added, updated, removed)
    return change, bool(added or updated or removed)
