"""Config sources: where live governance config comes from.

A source is watched one :class:`ConfigKey` (side, category, client and server names) at a time:
``await source.watch(key, deliver)`` runs until cancelled. It calls ``deliver(value)`` once with the
key's current value as soon as it knows it (``None``: absent), then once per change: the decoded
JSON of the category, ``None`` when the key is deleted (back to defaults), or :data:`KEEP` when the
new value could not be decoded (the source logs that once; the config in force stays).

:class:`DictSource` (tests, programs that compute their config) is here; ``FileSource`` is in
:mod:`kitex_grpc.config.file` and ``EtcdConfigSource`` in :mod:`kitex_grpc.config.etcd`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP
"""Delivered for a value that could not be decoded: keep the config in force."""

Deliver = Callable[[Any], None]


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigKey:
    """One watched key: ``side`` "client" or "server", the ``category`` (``rpc_timeout``, ``retry``,
    ``circuit_break``, ``degradation``, ``limit``), the calling service's name (client side) and the
    server's (config-etcd's ``ClientServiceName`` / ``ServerServiceName``)."""

    side: str
    category: str
    client_service: str
    server_service: str


class ConfigSource(Protocol):
    """What ``client.with_config_source`` / ``server.with_config_source`` take."""

    kind: str
    """Shown in ``describe()`` as where a value came from: ``"etcd"``, ``"file"``, ``"dict"``."""
    go_defaults: bool
    """Whether, by default, clients watching this source take config-etcd's implicit defaults."""

    def describe_key(self, key: ConfigKey) -> str:
        """Where ``key`` lives in this source (an etcd key, a file and category, ...)."""
        ...

    async def watch(self, key: ConfigKey, deliver: Deliver) -> None:
        """Deliver the key's value, then its changes, until cancelled."""
        ...


class DictSource:
    """An in-process source: a mapping of category -> JSON-shaped value, changed with :meth:`set`
    and :meth:`delete`. Watchers see a change at once (synchronously, on the caller's thread: call
    it from the event loop). The same dict serves clients and servers (categories do not overlap)."""

    kind = "dict"

    def __init__(self, values: Mapping[str, Any] | None = None, *, go_defaults: bool = False) -> None:
        self._values: dict[str, Any] = dict(values or {})
        self._watchers: dict[str, list[Deliver]] = {}
        self.go_defaults = go_defaults

    def describe_key(self, key: ConfigKey) -> str:
        return f"dict[{key.category!r}]"

    def set(self, category: str, value: Any) -> None:
        self._values[category] = value
        for deliver in tuple(self._watchers.get(category, ())):
            deliver(value)

    def delete(self, category: str) -> None:
        self._values.pop(category, None)
        for deliver in tuple(self._watchers.get(category, ())):
            deliver(None)

    async def watch(self, key: ConfigKey, deliver: Deliver) -> None:
        watchers = self._watchers.setdefault(key.category, [])
        watchers.append(deliver)
        try:
            deliver(self._values.get(key.category))
            await asyncio.Event().wait()
        finally:
            watchers.remove(deliver)
