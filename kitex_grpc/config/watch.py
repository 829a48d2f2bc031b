"""Runs the watches of a client's or server's config sources and applies what they deliver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from kitex_grpc.config.source import KEEP, ConfigKey, ConfigSource

_log = logging.getLogger("kitex_grpc.config")

Apply = Callable[[str, Any, str, str, int], None]
"""``apply(category, value, source kind, key description, source rank)``; the rank is the source's
position among the watched sources (option order)."""


class ConfigWatch:
    """One task per (source, key); :meth:`ready` waits until every key has been read once."""

    def __init__(self, watches: Sequence[tuple[ConfigSource, ConfigKey]], apply: Apply) -> None:
        self._watches = tuple(watches)
        self._apply = apply
        self._tasks: list[asyncio.Task[None]] = []
        self._pending = len(self._watches)
        self._ready: asyncio.Event | None = None
        self.applied = 0  # updates applied, for tests and diagnostics

    @property
    def started(self) -> bool:
        return bool(self._tasks) or not self._watches

    def start(self) -> None:
        """Start watching (needs a running event loop); a second call does nothing."""
        if self._tasks or not self._watches:
            return
        self._ready = asyncio.Event()
        loop = asyncio.get_running_loop()
        ranks: dict[int, int] = {}
        for source, key in self._watches:
            rank = ranks.setdefault(id(source), len(ranks))
            self._tasks.append(loop.create_task(self._run(source, key, rank)))

    async def _run(self, source: ConfigSource, key: ConfigKey, rank: int) -> None:
        where = source.describe_key(key)
        first = True

        def deliver(value: Any) -> None:
            nonlocal first
            if value is not KEEP:
                try:
                    self._apply(key.category, value, source.kind, where, rank)
                    self.applied += 1
                except Exception:
                    _log.exception(
                        "config %s: applying the new value failed; the value in force stays", where
                    )
            if first:
                first = False
                self._pending -= 1
                if self._pending <= 0 and self._ready is not None:
                    self._ready.set()

        try:
            await source.watch(key, deliver)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("config %s: the watch ended", where)

    async def ready(self, within: float = 5.0) -> bool:
        """Start if needed and wait (at most ``within`` seconds) until every key was read once."""
        self.start()
        if self._ready is None:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._ready.wait()
        return self._ready.is_set()

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
