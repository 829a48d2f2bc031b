"""The one-shot wake-up a call's reader or writer parks on (shared by client and server calls)."""

from __future__ import annotations

import asyncio


class Wakeup:
    """One waiter parks in :meth:`wait` until :meth:`wake`.

    A wake with nobody waiting is not remembered: callers re-check their condition in a loop. A wait
    that was cancelled leaves its future done, so the next wait makes a new one.
    """

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    async def wait(self, loop: asyncio.AbstractEventLoop) -> None:
        future = self._future
        if future is None or future.done():
            future = self._future = loop.create_future()
        await future

    def wake(self) -> None:
        future = self._future
        if future is not None:
            self._future = None
            if not future.done():
                future.set_result(None)
