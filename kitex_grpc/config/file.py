"""Live config from a local file: one JSON (or YAML) document holding the categories.

::

    {"rpc_timeout": {"*": {"rpc_timeout_ms": 1000}},
     "retry": {"Unary": {"enable": true, "type": 0, "failure_policy": {...}}},
     "circuit_break": {...}, "degradation": {...}, "limit": {"qps_limit": 100}}

Each category has config-etcd's JSON (:mod:`kitex_grpc.config.model`); a category that is absent is
at its defaults. YAML is read when the name ends in ``.yaml``/``.yml`` and PyYAML is importable (it
is not a dependency of kitex-grpc). The file is polled (its mtime, size and inode every
``interval``, 0.1 s): watchfiles is not used. A change is read once the file has stayed unchanged
for ``debounce`` (0.05 s), so an editor's several writes become one reload. A document that does not
parse, or a missing file, is logged once and the config in force stays; only the categories whose
value changed are applied again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from kitex_grpc.config.source import KEEP, ConfigKey, Deliver

_log = logging.getLogger("kitex_grpc.config.file")

_Stamp = tuple[int, int, int]


class FileSource:
    """Watches one file; ``go_defaults`` off by default (see ``client.with_config_source``)."""

    kind = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval: float = 0.1,
        debounce: float = 0.05,
        go_defaults: bool = False,
    ) -> None:
        self.path = Path(path)
        self.yaml = self.path.suffix in (".yaml", ".yml")
        if self.yaml:
            try:
                import yaml  # type: ignore[import-untyped]  # noqa: F401
            except ImportError:
                raise ValueError(f"FileSource: {self.path} is YAML but PyYAML is not installed") from None
        if interval <= 0 or debounce < 0:
            raise ValueError("FileSource: interval must be > 0 and debounce >= 0 seconds")
        self.interval = interval
        self.debounce = debounce
        self.go_defaults = go_defaults
        self.reloads = 0  # documents read and parsed, for tests and diagnostics
        self.settling = False  # a change was seen; waiting for the file to stop changing
        self._watchers: dict[str, list[Deliver]] = {}
        self._current: dict[str, Any] | None = None  # the last good document
        self._stamp: _Stamp | None = None
        self._poller: asyncio.Task[None] | None = None
        self._logged: _Stamp | None = None

    def describe_key(self, key: ConfigKey) -> str:
        return f"{self.path}[{key.category!r}]"

    async def watch(self, key: ConfigKey, deliver: Deliver) -> None:
        if self._poller is None:
            self._load(self._read_stamp())
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        self._watchers.setdefault(key.category, []).append(deliver)
        try:
            deliver(KEEP if self._current is None else self._current.get(key.category))
            await asyncio.Event().wait()
        finally:
            self._watchers[key.category].remove(deliver)
            if not any(self._watchers.values()) and self._poller is not None:
                self._poller.cancel()
                self._poller = None

    def _read_stamp(self) -> _Stamp | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            stamp = self._read_stamp()
            if stamp == self._stamp:
                continue
            self.settling = True
            while True:  # debounce: read once the file has stopped changing
                await asyncio.sleep(self.debounce)
                settled = self._read_stamp()
                if settled == stamp:
                    break
                stamp = settled
            self.settling = False
            previous = self._current
            if self._load(stamp):
                self._dispatch(previous)

    def _load(self, stamp: _Stamp | None) -> bool:
        """Read and parse the file; ``True`` if a new good document is in ``_current``."""
        self._stamp = stamp
        try:
            text = self.path.read_text()
            document = self._parse(text)
            if not isinstance(document, dict):
                raise ValueError(f"expected an object of categories, got {type(document).__name__}")
        except (OSError, ValueError) as exc:
            if self._logged != stamp:  # once per version of the file
                self._logged = stamp
                _log.warning("config %s: not loaded (%s); the config in force stays", self.path, exc)
            return False
        self.reloads += 1
        self._current = document
        return True

    def _parse(self, text: str) -> Any:
        if self.yaml:
            import yaml

            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(str(exc)) from exc
        return json.loads(text)

    def _dispatch(self, previous: dict[str, Any] | None) -> None:
        current = self._current or {}
        for category, watchers in self._watchers.items():
            value = current.get(category)
            if previous is not None and previous.get(category) == value:
                continue
            for deliver in tuple(watchers):
                with contextlib.suppress(Exception):
                    deliver(value)
