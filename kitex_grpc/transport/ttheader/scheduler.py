"""When the requests of one TTHeader-port connection run: eagerly inside ``data_received``, then on
worker tasks.

Each request runs in its own copy of the connection's context (metainfo, rpcinfo, deadline live in
contextvars), first eagerly inside ``data_received``: the usual handler never suspends, and then
neither a task nor a loop iteration is spent on it. A request that suspends is handed to the worker
task that was current during its eager step (asyncio's own eager tasks do the same), so
``asyncio.timeout()``, ``TaskGroup`` and ``current_task()`` in a handler see the task that will resume
the request, and its cancellation reaches the request. The worker steps it (still in its own
context) until it ends.

Order: over Framed and Buffered (clients without seq-id matching) requests are served one after
another; those that arrive behind a suspended one wait, and its worker serves them in order. Over
TTHeader every request starts at once and is answered when it ends (Kitex's mux server,
``pkg/remote/trans/netpollmux``): a client that pipelines there matches replies by seq id, and a
Kitex long-connection client never pipelines. Each suspended request then has a worker of its own;
finished workers wait for the next one (a few stay per connection).

The eager step uses asyncio's bookkeeping of the running task (``asyncio.tasks._enter_task`` /
``_leave_task``, which asyncio's own eager tasks use on Python 3.12+); without them (another
Python), requests are served by worker tasks only, never eagerly.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
from typing import TYPE_CHECKING, Any, Final

from kitex_grpc.suspension import FINISHED, NOT_STARTED, EagerStepper, Resumption
from kitex_grpc.transport.ttheader.serving import RequestServing
from kitex_grpc.transport.ttheader.wire import Message

if TYPE_CHECKING:  # named by class, not a protocol type: see serving's docstring
    from kitex_grpc.transport.ttheader.server_conn import ServerConnection

__all__ = ["IDLE_WORKERS", "RequestScheduler"]

logger = logging.getLogger("kitex_grpc.transport.ttheader")

_enter_task: Final[Any] = getattr(asyncio.tasks, "_enter_task", None)
_leave_task: Final[Any] = getattr(asyncio.tasks, "_leave_task", None)
_CAN_STEP_EAGERLY: Final = _enter_task is not None and _leave_task is not None
# The same bookkeeping's loop -> running task map: asyncio.current_task(loop) is a Python call
# around its get() on Python 3.11.
_current_tasks: Final[Any] = getattr(asyncio.tasks, "_current_tasks", None)
_current_task: Final[Any] = asyncio.current_task if _current_tasks is None else _current_tasks.get

IDLE_WORKERS: Final = 4  # finished workers a connection keeps for its next suspended requests


class _Worker:
    """A task that resumes a request which suspended during its eager step."""

    __slots__ = ("pending", "task", "wake")

    task: asyncio.Task[None]

    def __init__(self) -> None:
        self.pending: Resumption | None = None
        self.wake: asyncio.Future[None] | None = None

    def assign(self, pending: Resumption) -> None:
        self.pending = pending
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)


class RequestScheduler:
    """Runs the decoded requests of one connection (see the module docstring)."""

    def __init__(self, serving: RequestServing, host: ServerConnection) -> None:
        self._serving = serving
        self._host = host
        self.queue: collections.deque[Message] = collections.deque()
        self.active = 0  # requests started and not ended (eagerly or by a worker)
        self.in_order = True  # serve one request at a time (not over TTHeader: see the module docstring)
        self.closed = False  # nothing more is served
        self._workers: set[_Worker] = set()  # created as requests suspend
        self._idle_workers: list[_Worker] = []
        self._base_context = contextvars.copy_context()
        self._stepper = EagerStepper()
        # the loop is kept: asyncio.get_running_loop() costs a getpid() system call on Python 3.11
        self._loop = asyncio.get_running_loop()

    @property
    def idle(self) -> bool:
        """No request in progress and none waiting."""
        return not self.active and not self.queue

    def run(self) -> None:
        """Serve the queued requests that may start now: each eagerly up to its first suspension when
        called from a plain loop callback (as asyncio calls ``data_received``), never inside a task."""
        queue = self.queue
        loop = self._loop
        eager = _CAN_STEP_EAGERLY and _current_task(loop) is None
        in_order = self.in_order
        idle = self._idle_workers  # the last one is entered for each eager step, taken if it suspends
        stepper = self._stepper
        serving = self._serving
        host = self._host
        while queue and not self.closed:
            if in_order and self.active:
                break  # behind a suspended request: its worker serves the rest in order
            message = queue.popleft()
            context = self._base_context.copy()
            coro = serving.serve(host, message)
            worker = idle[-1] if idle else self._new_worker(loop)
            if not eager:
                idle.pop()
                self.active += 1
                worker.assign(Resumption(coro, NOT_STARTED, context))
                continue
            task = worker.task
            _enter_task(loop, task)
            try:
                yielded = stepper.first_step(coro, context)
            except BaseException as exc:  # serve catches what a request can raise; this is a bug
                self._log_failure(exc)
                yielded = FINISHED
            finally:
                _leave_task(loop, task)
            if yielded is FINISHED:
                continue
            idle.pop()
            self.active += 1
            worker.assign(Resumption(stepper.take_suspended(), yielded, context))

    def stop(self) -> None:
        """Serve nothing more: the queue is dropped; requests in progress end by themselves."""
        self.closed = True
        self.queue.clear()

    def lost(self) -> None:
        """The connection is gone: :meth:`stop`, and the idle workers end."""
        self.stop()
        for worker in self._idle_workers:
            worker.task.cancel()  # idle: nothing left to serve (busy ones end after their request)
        self._idle_workers.clear()

    def abort(self) -> None:
        """Cancel every worker, the requests they run with them."""
        for worker in list(self._workers):
            worker.task.cancel()

    def _new_worker(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        """A new idle worker (the last of ``_idle_workers``)."""
        worker = _Worker()
        worker.task = loop.create_task(self._work(worker))
        self._workers.add(worker)
        self._idle_workers.append(worker)
        return worker

    async def _work(self, worker: _Worker) -> None:
        """A worker: resumes the suspended request handed to it (in order, then the queue behind it)."""
        loop = asyncio.get_running_loop()
        queue = self.queue
        try:
            while True:
                pending: Resumption | None = worker.pending
                worker.pending = None
                if pending is None:
                    if self.closed:
                        return
                    wake = worker.wake = loop.create_future()
                    try:
                        await wake
                    except asyncio.CancelledError as exc:
                        pending, worker.pending = worker.pending, None
                        if pending is None:
                            raise  # cancelled while idle: the connection is gone
                        pending.throw = exc  # cancelled after a hand-over: the request gets it
                    else:
                        continue
                try:
                    await pending
                except asyncio.CancelledError:
                    self.active -= 1
                    raise
                except BaseException as failure:  # not `exc`: see serving.RequestServing.serve
                    self._log_failure(failure)
                if self.in_order and queue and not self.closed:
                    worker.pending = Resumption(
                        self._serving.serve(self._host, queue.popleft()),
                        NOT_STARTED,
                        self._base_context.copy(),
                    )
                    continue
                self.active -= 1
                if not self.active:
                    self._host.became_idle()
                if self.closed or len(self._idle_workers) >= IDLE_WORKERS:
                    return
                self._idle_workers.append(worker)
        finally:
            self._workers.discard(worker)

    def _log_failure(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            return
        logger.error("ttheader server: request on %s failed", self._host.peer, exc_info=exc)
