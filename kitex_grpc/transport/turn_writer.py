"""Frames written during one event-loop turn, sent together in one ``transport.write``.

The TTHeader mux client (:mod:`kitex_grpc.transport.ttheader.mux`) and both ends of a ttstream
connection (:mod:`kitex_grpc.transport.ttstream.conn`) queue each frame in a :class:`TurnWriter`: the
first frame of a turn schedules a flush with ``call_soon``, and everything queued until then leaves
joined, so a peer that answers a batch in one write makes a round trip cost two system calls per
batch instead of per frame. ``limit`` sends early once that many frames wait (see ``FLUSH_FRAMES``
in the ttstream connection for why it pays there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["TurnWriter"]


class TurnWriter:
    """Queues frames and hands them to ``send`` joined, once per loop turn (or every ``limit``)."""

    __slots__ = ("_limit", "_loop", "_out", "_send")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, send: Callable[[bytes], None], limit: int = 0
    ) -> None:
        self._loop = loop
        self._send = send  # writes to the socket, or drops the bytes once it is closing
        self._limit = limit  # 0: no limit
        self._out: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue one frame."""
        out = self._out
        out.append(data)
        if len(out) == 1:
            self._loop.call_soon(self.flush)
        elif len(out) == self._limit:
            self.flush()  # the call_soon above then finds nothing, or this turn's later frames

    def flush(self) -> None:
        """Send what is queued now."""
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._send(data)

    def clear(self) -> None:
        """Drop what is queued (the connection is being aborted)."""
        self._out.clear()
