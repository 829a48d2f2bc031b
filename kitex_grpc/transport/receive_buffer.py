"""Reading a socket into one reused buffer instead of a fresh ``bytes`` per read.

asyncio's plain :class:`asyncio.Protocol` path calls ``sock.recv(256 KiB)`` for every read: CPython
allocates a 256 KiB ``bytes`` (above glibc's mmap threshold, so an ``mmap``, page faults on first
touch, then an ``mremap`` to shrink it to the few hundred bytes that arrived). With many connections
each carrying one small request at a time, that is a large share of a server's CPU per request.
:class:`ReceiveBufferProtocol` uses asyncio's buffered-protocol path (``recv_into``) with one
256 KiB buffer per thread, shared by every connection on it, and hands each read to
``data_received`` as a :class:`memoryview` of that buffer.

Invariant: the view is valid only during the ``data_received`` call. The loop reads one socket at a
time and calls ``buffer_updated`` right after ``recv_into``, so sharing is safe as long as nothing
keeps the view (or a slice of it) past the call: decoders copy what they keep (``bytes(...)`` or
``bytearray +=``).
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["RECEIVE_BUFFER_SIZE", "ReceiveBufferProtocol", "thread_buffer"]

RECEIVE_BUFFER_SIZE = 256 * 1024  # asyncio's own read size (selector_events max_size)

_per_thread = threading.local()


def thread_buffer() -> memoryview:
    """This thread's shared receive buffer (made on first use)."""
    view: memoryview | None = getattr(_per_thread, "view", None)
    if view is None:
        view = _per_thread.view = memoryview(bytearray(RECEIVE_BUFFER_SIZE))
    return view


class ReceiveBufferProtocol(asyncio.BufferedProtocol):
    """An :class:`asyncio.BufferedProtocol` that delivers reads to :meth:`data_received`.

    Subclasses implement ``data_received(data)`` as for :class:`asyncio.Protocol`, except that
    ``data`` is a :class:`memoryview` that must not be kept after the call returns.
    """

    __slots__ = ("_receive_view",)

    _receive_view: memoryview

    def get_buffer(self, sizehint: int) -> memoryview:
        try:
            return self._receive_view
        except AttributeError:
            view = self._receive_view = thread_buffer()
            return view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._receive_view[:nbytes])

    def data_received(self, data: memoryview) -> None:
        raise NotImplementedError
