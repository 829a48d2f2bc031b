"""A resolver over fixed addresses (what ``client.with_host_ports`` becomes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kitex_grpc.discovery.resolver import DEFAULT_WEIGHT, Change, Instance, Result, default_diff

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import EndpointInfo


class StaticResolver:
    """Always resolves to the same instances (weight 10 each unless :class:`Instance` objects are given)."""

    name = "static"

    def __init__(self, instances: Sequence[str | Instance]) -> None:
        self._result = Result.of(
            ",".join(i if isinstance(i, str) else i.address for i in instances),
            [i if isinstance(i, Instance) else Instance(i, DEFAULT_WEIGHT) for i in instances],
        )

    def target(self, endpoint: EndpointInfo) -> str:
        return self._result.cache_key

    async def resolve(self, target: str) -> Result:
        return self._result

    def diff(self, cache_key: str, prev: Result, next: Result) -> tuple[Change, bool]:
        return default_diff(cache_key, prev, next)
