"""Live config from etcd in kitex-contrib config-etcd's layout (KITEX-WIRE-2.md §15.1, §15.2).

Keys: ``<prefix>/<path>``, prefix ``/KitexConfig``; client path
``{{.ClientServiceName}}/{{.ServerServiceName}}/{{.Category}}``, server path
``{{.ServerServiceName}}/{{.Category}}`` (Go ``text/template`` placeholders; only these three names
are known). Values: the category's JSON (see :mod:`kitex_grpc.config.model`).

Watching, per exact key: read it (``Range``), apply it, then watch from the next revision, so no
change between the read and the watch is lost. PUT applies the new JSON, DELETE goes back to the
defaults, JSON that does not parse is logged once and the config in force stays. When etcd goes
away the config in force stays; the watch is resumed from the last revision seen, after a back-off
that doubles from 0.1 s to 5 s. If etcd compacted that revision meanwhile (the watch is cancelled
with ``compact_revision``), the key is read again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from kitex_grpc.config.source import KEEP, ConfigKey, Deliver
from kitex_grpc.discovery.etcd import EtcdClient, WatchCompactedError

_log = logging.getLogger("kitex_grpc.config.etcd")

DEFAULT_PREFIX = "/KitexConfig"
DEFAULT_CLIENT_PATH = "{{.ClientServiceName}}/{{.ServerServiceName}}/{{.Category}}"
DEFAULT_SERVER_PATH = "{{.ServerServiceName}}/{{.Category}}"
MIN_BACKOFF = 0.1
MAX_BACKOFF = 5.0

_PLACEHOLDER = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
_NAMES = ("ClientServiceName", "ServerServiceName", "Category")


def render(template: str, values: dict[str, str]) -> str:
    """Fill a config-etcd path template; an unknown ``{{.Name}}`` is an error."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"config-etcd template {template!r}: unknown field {name!r} (known: {_NAMES})")
        return values[name]

    return _PLACEHOLDER.sub(fill, template)


class EtcdConfigSource:
    """config-etcd's ``etcd.NewClient(etcd.Options{...})`` plus the client and server suites' keys.

    ``endpoints``: etcd ``host:port`` addresses; ``timeout``: the first read's time limit (5 s, as
    config-etcd). ``go_defaults`` (default on): clients watching this source take config-etcd's
    implicit defaults (see ``client.with_config_source``).
    """

    kind = "etcd"

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        client_path_format: str = DEFAULT_CLIENT_PATH,
        server_path_format: str = DEFAULT_SERVER_PATH,
        timeout: float = 5.0,
        go_defaults: bool = True,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        probe = dict.fromkeys(_NAMES, "x")
        for template in (prefix, client_path_format, server_path_format):
            render(template, probe)  # refuse an unknown placeholder now
        self.prefix = prefix
        self.client_path_format = client_path_format
        self.server_path_format = server_path_format
        self.go_defaults = go_defaults
        self.max_backoff = max_backoff
        self.etcd = EtcdClient(endpoints, timeout=timeout)
        self.reconnects = 0  # watches resumed after a failure, for tests and diagnostics
        self.rereads = 0  # keys read again after a compaction

    def full_key(self, key: ConfigKey) -> str:
        values = {
            "ClientServiceName": key.client_service,
            "ServerServiceName": key.server_service,
            "Category": key.category,
        }
        path = self.client_path_format if key.side == "client" else self.server_path_format
        return f"{render(self.prefix, values)}/{render(path, values)}"

    def describe_key(self, key: ConfigKey) -> str:
        return self.full_key(key)

    async def watch(self, key: ConfigKey, deliver: Deliver) -> None:
        full = self.full_key(key)
        state = _KeyState(full, deliver)
        backoff = MIN_BACKOFF
        revision = 0  # the last revision this key was read or watched at; 0: read it first
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                if revision == 0:
                    value, revision = await self.etcd.get_with_revision(full)
                    state.offer(value)
                # the watch starts right after what was read, so no change is lost in between
                await self.etcd.watch_key(full, revision + 1, state.offer_event)
            except asyncio.CancelledError:
                raise
            except WatchCompactedError:
                self.rereads += 1
                _log.info("config %s: watch history compacted; reading the key again", full)
                revision = 0
                continue
            except Exception as exc:
                revision = max(revision, state.revision)
                if not state.down:
                    state.down = True
                    _log.warning(
                        "config %s: etcd unreachable (%s); keeping the config in force, retrying", full, exc
                    )
                if loop.time() - started > self.max_backoff:
                    backoff = MIN_BACKOFF  # it had been working: a new outage starts the back-off again
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                self.reconnects += 1
                continue

    async def close(self) -> None:
        await self.etcd.close()


class _KeyState:
    """What was last delivered for one key: decode, skip repeats, log bad JSON once per value."""

    __slots__ = ("deliver", "down", "key", "last", "revision")

    def __init__(self, key: str, deliver: Deliver) -> None:
        self.key = key
        self.deliver = deliver
        self.last: bytes | object | None = _NOTHING
        self.revision = 0
        self.down = False

    def offer_event(self, value: bytes | None, revision: int) -> None:
        self.revision = revision
        self.offer(value)

    def offer(self, value: bytes | None) -> None:
        first = self.last is _NOTHING
        self.down = False
        if value == self.last:
            return
        self.last = value
        if value is None:
            self.deliver(None)
            return
        try:
            decoded: Any = json.loads(value)
        except ValueError as exc:
            _log.warning(
                "config %s: the value is not JSON (%s); skipped, the config in force stays", self.key, exc
            )
            if first:
                self.deliver(KEEP)
            return
        self.deliver(decoded)


_NOTHING = object()
