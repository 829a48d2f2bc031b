"""Bounded logging of repeated protocol events: one line per kind and interval, with a count.

A peer that floods (refused streams, bad frames, PINGs) must not turn the log into the attack's
amplifier (one line per frame was ~21,000 lines a second). :class:`EventLog` writes the first event
of a kind at once, counts the ones that follow within ``interval`` seconds, and writes one summary
line (``... (N more in the last 1.0s)``) when the interval is over: at most two lines per kind and
interval, whatever the rate. The summary is written by a timer of the running loop, so the last
burst of a flood is reported even when nothing follows it; without a running loop it is written
with the next event (or :meth:`EventLog.flush`).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_LOG_INTERVAL", "EventLog"]

DEFAULT_LOG_INTERVAL = 1.0


class _Kind:
    __slots__ = ("args", "level", "message", "start", "suppressed", "timer")

    def __init__(self, start: float) -> None:
        self.start = start
        self.suppressed = 0
        self.level = logging.WARNING
        self.message = ""
        self.args: tuple[Any, ...] = ()
        self.timer: asyncio.TimerHandle | None = None


class EventLog:
    """Rate-limited logging of repeated events (see the module docstring).

    ``kind`` names the event (``"refused_stream"``, ``"ping_flood"`` ...); the message and its
    arguments are those of :meth:`logging.Logger.log`.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}

    def log(self, kind: str, level: int, message: str, *args: Any) -> None:
        """Log ``message % args`` unless ``kind`` was logged less than ``interval`` ago (then count it)."""
        now = self._clock()
        entry = self._kinds.get(kind)
        if entry is not None and now - entry.start < self.interval:
            entry.suppressed += 1
            entry.level, entry.message, entry.args = level, message, args
            if entry.timer is None:
                entry.timer = _call_later(entry.start + self.interval - now, self._summarise, kind)
            return
        if entry is not None:
            self._summarise(kind)
        self._kinds[kind] = _Kind(now)
        if self.logger.isEnabledFor(level):
            self.logger.log(level, message, *args)

    def warning(self, kind: str, message: str, *args: Any) -> None:
        self.log(kind, logging.WARNING, message, *args)

    def flush(self) -> None:
        """Write the summaries of every kind now (e.g. when the server stops)."""
        for kind in list(self._kinds):
            self._summarise(kind)
        self._kinds.clear()

    def _summarise(self, kind: str) -> None:
        entry = self._kinds.get(kind)
        if entry is None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        if entry.suppressed and self.logger.isEnabledFor(entry.level):
            elapsed = max(self.interval, self._clock() - entry.start)
            self.logger.log(
                entry.level,
                entry.message + " (%d more in the last %.1fs)",
                *entry.args,
                entry.suppressed,
                elapsed,
            )
        entry.suppressed = 0
        # The next event opens a new interval.
        entry.start = -float("inf")


def _call_later(delay: float, callback: Callable[[str], None], kind: str) -> asyncio.TimerHandle | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.call_later(max(0.0, delay), callback, kind)
