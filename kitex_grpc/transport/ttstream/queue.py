"""A stream's received messages: a bounded queue whose fullness holds the connection's reads.

Kitex's queue is unbounded (``internal/container/pipe.go``); this one tells its owner (the
connection) when it reaches ``limit`` messages and when it has drained to half of that, and the
connection pauses reading its socket in between (see :mod:`kitex_grpc.transport.ttstream.config`).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Protocol

__all__ = ["FlowOwner", "RecvQueue"]


class FlowOwner(Protocol):
    def hold(self, queue: RecvQueue) -> None:
        """``queue`` is full: stop reading the connection."""
        ...

    def release(self, queue: RecvQueue) -> None:
        """``queue`` has room again (or is gone)."""
        ...


class RecvQueue:
    """Payloads in arrival order, then an end: ``None`` (a clean end: ``EOFError``) or an error.

    Messages that arrived before an error are delivered before it (a Python client gets every reply
    that preceded the server's Trailer; KITEX-WIRE-2.md §11.15).
    """

    __slots__ = ("_ended", "_error", "_full", "_items", "_limit", "_owner", "_waiter")

    def __init__(self, owner: FlowOwner, limit: int) -> None:
        self._owner = owner
        self._limit = limit
        self._items: collections.deque[bytes] = collections.deque()
        self._ended = False
        self._error: BaseException | None = None
        self._full = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def ended(self) -> bool:
        return self._ended

    def __len__(self) -> int:
        return len(self._items)

    def put(self, payload: bytes) -> None:
        if self._ended:
            return
        self._items.append(payload)
        self._wake()
        if not self._full and len(self._items) >= self._limit:
            self._full = True
            self._owner.hold(self)

    def end(self, error: BaseException | None = None) -> None:
        """No more messages; queued ones are still delivered, then ``error`` (or ``EOFError``)."""
        if not self._ended:
            self._ended = True
            self._error = error
            self._wake()

    def abort(self, error: BaseException) -> None:
        """End now: queued messages are dropped and every ``get`` raises ``error``."""
        self._items.clear()
        self._ended = False
        self.end(error)
        self._unhold()

    async def get(self) -> bytes:
        items = self._items
        while not items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise EOFError
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter
        payload = items.popleft()
        if self._full and len(items) <= self._limit // 2:
            self._unhold()
        return payload

    def _unhold(self) -> None:
        if self._full:
            self._full = False
            self._owner.release(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
