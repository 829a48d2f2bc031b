"""Large writes handed to an asyncio transport a slice at a time, as it drains.

On Python 3.11 asyncio's selector transport copies the part of a write the socket did not take into
its own ``bytearray`` (``selector_events._SelectorSocketTransport.write``): a 64 MiB reply written at
once is held twice, ours and the transport's copy. :class:`PacedWrites` gives the transport a
:data:`SLICE` of a large write at a time, the next when ``resume_writing`` says its buffer drained
below the low-water mark, so the transport never holds more than a slice and its high-water mark.
Small writes go straight through unless slices are still waiting (order is kept).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Final

__all__ = ["SLICE", "PacedWrites"]

SLICE: Final = 256 * 1024  # bytes per transport.write of a large write


class PacedWrites:
    """The writes of one connection (see the module docstring). ``pause``/``resume`` come from the
    protocol's ``pause_writing``/``resume_writing``; ``close`` closes the transport once every queued
    slice is written."""

    __slots__ = ("_close_when_done", "_paused", "_slices", "_transport")

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._slices: collections.deque[memoryview] = collections.deque()
        self._paused = False
        self._close_when_done = False

    @property
    def pending(self) -> int:
        """Bytes queued here, not yet given to the transport."""
        return sum(len(s) for s in self._slices)

    def write(self, data: bytes) -> None:
        if len(data) <= SLICE and not self._slices:
            self._transport.write(data)
            return
        view = memoryview(data)
        self._slices.extend(view[i : i + SLICE] for i in range(0, len(view), SLICE))
        self._pump()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._pump()

    def close(self) -> None:
        if self._slices:
            self._close_when_done = True
        else:
            self._transport.close()

    def drop(self) -> None:
        """Forget what is queued (the connection is gone or aborted)."""
        self._slices.clear()
        self._close_when_done = False

    def _pump(self) -> None:
        # transport.write calls pause_writing synchronously once its buffer passes the high-water mark.
        transport, slices = self._transport, self._slices
        while slices and not self._paused and not transport.is_closing():
            transport.write(slices.popleft())
        if not slices and self._close_when_done:
            self._close_when_done = False
            transport.close()
