"""Carrying on with a coroutine that was first stepped by hand.

Two hot paths run a call's coroutine eagerly, with a bare ``send(None)``, and only pay for the
machinery of a suspended call (a task, a timer) if it suspends: the TTHeader server steps each
request inside ``data_received``, and the server deadline is armed only when a handler first waits.
:class:`Resumption` is the awaitable that picks such a coroutine up where the manual step left it, as
if it had been awaited from the start: what it yielded goes to the awaiting task, and what the task
sends or throws goes back into it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["FINISHED", "NOT_STARTED", "Resumption", "first_step"]

NOT_STARTED: Any = object()
"""``yielded`` of a :class:`Resumption` whose coroutine has not run at all yet."""

FINISHED: Any = object()
"""What :func:`first_step` returns for a coroutine that ended in that step."""


def first_step(coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> Any:
    """Run ``coro`` up to its first suspension inside ``context``: what it yielded, or
    :data:`FINISHED` (its result is dropped). Its exceptions propagate.

    This module is not compiled on purpose: a compiled caller that catches the ``StopIteration``
    of a finished coroutine records a traceback entry for it first (a frame and a code object, about
    a fifth of a small request's own CPU on the TTHeader server); interpreted, catching it is cheap.
    """
    try:
        return context.run(coro.send, None)
    except StopIteration:
        return FINISHED


class Resumption:
    """Await the rest of ``coro``.

    ``yielded``: what its last manual step yielded (the future it waits on), or :data:`NOT_STARTED`.
    ``context``: run every step inside this :class:`contextvars.Context` (else the awaiting task's).
    ``throw``: an exception to deliver first (say, the cancellation of the task that will await this).
    """

    __slots__ = ("context", "coro", "throw", "yielded")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        yielded: Any = NOT_STARTED,
        context: contextvars.Context | None = None,
    ) -> None:
        self.coro = coro
        self.yielded = yielded
        self.context = context
        self.throw: BaseException | None = None

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, context = self.coro, self.context
        send, throw = coro.send, coro.throw
        try:
            if self.throw is not None:
                yielded = throw(self.throw) if context is None else context.run(throw, self.throw)
            elif self.yielded is not NOT_STARTED:
                yielded = self.yielded
            else:
                yielded = send(None) if context is None else context.run(send, None)
            while True:
                try:
                    value = yield yielded
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    yielded = throw(exc) if context is None else context.run(throw, exc)
                else:
                    yielded = send(value) if context is None else context.run(send, value)
        except StopIteration as stop:
            return stop.value
