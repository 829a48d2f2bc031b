"""When the requests of one TTHeader-port connection run: each on an asyncio task of its own.

Each request runs on its own task, in its own copy of the connection's context (metainfo, rpcinfo,
deadline live in contextvars), so ``asyncio.timeout()``, ``TaskGroup`` and ``current_task()`` in a
handler see the task that runs the request, and its cancellation reaches the request. Only public
asyncio API: on Python 3.12+ the task starts eagerly (``asyncio.Task(..., eager_start=True)``), so
a request that never suspends, the usual one, is served inside ``data_received`` without a loop
iteration; on Python 3.11 it is a plain task whose first step runs in the loop's next iteration.

Order: over Framed and Buffered (clients without seq-id matching) requests are served one after
another; those that arrive behind one in progress wait, and each starts when the one before it
ends. Over TTHeader every request starts at once and is answered when it ends (Kitex's mux server,
``pkg/remote/trans/netpollmux``): a client that pipelines there matches replies by seq id, and a
Kitex long-connection client never pipelines.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import sys
from typing import TYPE_CHECKING, Final

from kitex_grpc.transport.ttheader.serving import RequestServing
from kitex_grpc.transport.ttheader.wire import Message

if TYPE_CHECKING:  # named by class, not a protocol type: see serving's docstring
    from kitex_grpc.transport.ttheader.server_conn import ServerConnection

__all__ = ["EAGER_START", "RequestScheduler"]

logger = logging.getLogger("kitex_grpc.transport.ttheader")

EAGER_START: Final = sys.version_info >= (3, 12)
"""Whether a request's task takes its first step at once, inside :meth:`RequestScheduler.run`."""


class RequestScheduler:
    """Runs the decoded requests of one connection (see the module docstring)."""

    def __init__(self, serving: RequestServing, host: ServerConnection) -> None:
        self._serving = serving
        self._host = host
        self.queue: collections.deque[Message] = collections.deque()
        self.active = 0  # requests started and not ended
        self.in_order = True  # serve one request at a time (not over TTHeader: see the module docstring)
        self.closed = False  # nothing more is served
        self._tasks: dict[int, asyncio.Task[None]] = {}  # the requests in progress, by start number
        self._started = 0
        self._base_context = contextvars.copy_context()
        # the loop is kept: asyncio.get_running_loop() costs a getpid() system call on Python 3.11
        self.loop = asyncio.get_running_loop()

    @property
    def idle(self) -> bool:
        """No request in progress and none waiting."""
        return not self.active and not self.queue

    def run(self) -> None:
        """Start the queued requests that may start now (see the module docstring for the order)."""
        queue = self.queue
        in_order = self.in_order
        while queue and not self.closed:
            if in_order and self.active:
                break  # behind a request in progress: it starts the next when it ends
            self._start(queue.popleft(), True)

    def stop(self) -> None:
        """Serve nothing more: the queue is dropped; requests in progress end by themselves."""
        self.closed = True
        self.queue.clear()

    def lost(self) -> None:
        """The connection is gone: :meth:`stop` (requests in progress end by themselves)."""
        self.stop()

    def abort(self) -> None:
        """Cancel every request in progress."""
        for task in list(self._tasks.values()):
            task.cancel()

    def _start(self, message: Message, eager: bool) -> None:
        key = self._started
        self._started = key + 1
        self.active += 1
        coro = self._run(message, key)
        context = self._base_context.copy()
        if sys.version_info >= (3, 12) and eager:  # unverified: the project's machines run 3.11
            task = asyncio.Task(coro, loop=self.loop, context=context, eager_start=True)
            if task.done():  # ended in its eager first step: _run has already forgotten it
                return
        else:  # the constructor, not loop.create_task: a Python call fewer (no task factory, as on 3.12)
            task = asyncio.Task(coro, loop=self.loop, context=context)
        self._tasks[key] = task

    async def _run(self, message: Message, key: int) -> None:
        """One request's task: serve it, then start the next one in order."""
        try:
            await self._serving.serve(self._host, message)
        except asyncio.CancelledError:
            self._tasks.pop(key, None)
            self.active -= 1
            raise
        except BaseException as failure:  # not `exc`: see serving.RequestServing.serve
            # serve catches what a request can raise; this is a bug
            logger.error("ttheader server: request on %s failed", self._host.peer, exc_info=failure)
        self._tasks.pop(key, None)
        self.active -= 1
        queue = self.queue
        if self.in_order and queue and not self.closed:
            # not eagerly: a long queue of requests that never suspend would nest one start per request
            self._start(queue.popleft(), False)
        elif not self.active:
            self._host.became_idle()
