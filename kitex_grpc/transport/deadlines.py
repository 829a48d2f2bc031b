"""Deadlines of calls in flight, enforced by one loop timer per event loop instead of one per call.

``asyncio.timeout`` arms a ``TimerHandle`` per call and cancels it when the call ends. At tens of
thousands of calls a second that handle is most of a deadline's cost: each one is pushed on the
loop's timer heap, and a cancelled one stays there until the loop sweeps it, so the heap holds
thousands of dead handles (about 5 µs per call on the TTHeader server, ``bench.path_ttheader``).

Here a call in flight is an entry in a set, and the loop has one timer, armed for the earliest
deadline among the entries it has seen. A call that ends only leaves the set; the timer is moved only
when a new deadline comes before it. When it fires it cancels the tasks whose deadline has passed
and is armed again for the earliest deadline left. Under a steady load with one timeout it fires
about once per timeout, whatever the rate of calls.

The cancellation follows ``asyncio.timeout``'s rule: it becomes :class:`DeadlineExceededError` (a
``TimeoutError``) only if the deadline's cancellation is the only one pending on the task
(``Task.uncancel``); a cancellation from elsewhere stays a cancellation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

__all__ = ["DeadlineExceededError", "await_within"]

T = TypeVar("T")

_RESOLUTION: Final = 0.001  # seconds: uvloop's timer resolution (see _LoopDeadlines._fire)


class DeadlineExceededError(TimeoutError):
    """The deadline passed before the awaited call ended; its cancellation is the ``__cause__``."""


class _Watched:
    """One call in flight: its task, its deadline (``loop.time()`` clock) and whether it expired."""

    __slots__ = ("deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.expired = False


class _LoopDeadlines:
    """The calls in flight on one loop and the one timer that enforces their deadlines."""

    __slots__ = ("_armed_at", "_timer", "_watched", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._watched: set[_Watched] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")

    def add(self, task: asyncio.Task[Any], deadline: float) -> _Watched:
        watched = _Watched(task, deadline)
        self._watched.add(watched)
        if deadline < self._armed_at:
            self._arm(deadline)
        return watched

    def discard(self, watched: _Watched) -> None:
        # The timer stays where it is: when it fires for a call that has ended, it moves on.
        self._watched.discard(watched)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_at = float("inf")
        # Deadlines are time.monotonic(). uvloop's clock and timers count whole milliseconds, and its
        # clock is read once per loop turn: a timer can fire up to a millisecond before the deadline
        # it was armed for, and re-arming it until the deadline passed spun the loop (about 140 turns
        # per expiry). What falls due within the resolution is due now.
        now = time.monotonic() + _RESOLUTION
        due = [watched for watched in self._watched if watched.deadline <= now]
        for watched in due:
            self._watched.discard(watched)
            watched.expired = True
            watched.task.cancel()
        if self._watched:
            self._arm(min(watched.deadline for watched in self._watched))


# One per loop; a server or client runs on one loop, so this is nearly always the one asked for.
_current: _LoopDeadlines | None = None


def _deadlines_of(loop: asyncio.AbstractEventLoop) -> _LoopDeadlines:
    global _current
    deadlines = _current
    if deadlines is None or deadlines.loop is not loop:
        # Another loop (another thread's, or a test's next one): its own set. Calls in flight on the
        # one replaced keep their entry, which holds it, and its timer keeps running on its loop.
        deadlines = _current = _LoopDeadlines(loop)
    return deadlines


async def await_within(deadline: float, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` on the current task, cancelling the task if ``deadline`` passes first.

    ``deadline`` is absolute ``time.monotonic()`` (the clock of asyncio's loop and uvloop; a deadline
    within a millisecond of passing is treated as passed). Raises :class:`DeadlineExceededError` if
    the deadline's cancellation ended the call; any other cancellation propagates unchanged. Outside
    a task, awaits with no deadline enforced.
    """
    task = asyncio.current_task()
    if task is None:  # nothing to cancel (no transport of ours awaits outside a task)
        return await awaitable
    deadlines = _deadlines_of(task.get_loop())
    watched = deadlines.add(task, deadline)
    try:
        result = await awaitable
    except asyncio.CancelledError as exc:
        deadlines.discard(watched)
        if watched.expired and task.uncancel() == 0:
            raise DeadlineExceededError() from exc
        raise
    except BaseException:
        deadlines.discard(watched)
        if watched.expired:  # the call caught the deadline's cancellation and raised something else
            task.uncancel()
        raise
    deadlines.discard(watched)
    if watched.expired:  # the call caught the deadline's cancellation and returned
        task.uncancel()
    return result
