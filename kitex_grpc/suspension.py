"""Carrying on with a coroutine that was first stepped by hand.

Two hot paths run a call's coroutine eagerly and only pay for the machinery of a suspended call (a
task, a timer) if it suspends: the TTHeader server steps each request inside ``data_received``
(with an :class:`EagerStepper`), and the server deadline is armed only when a handler first waits
(a bare ``send(None)``). :class:`Resumption` is the awaitable that picks such a coroutine up where
the manual step left it, as if it had been awaited from the start: what it yielded goes to the
awaiting task, and what the task sends or throws goes back into it.
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["FINISHED", "NOT_STARTED", "EagerStepper", "Resumption"]

NOT_STARTED: Any = object()
"""``yielded`` of a :class:`Resumption` whose coroutine has not run at all yet."""

FINISHED: Any = object()
"""What :meth:`EagerStepper.first_step` returns for a coroutine that ended in that step."""


@types.coroutine
def _drive() -> Generator[Any, Any, None]:
    # Runs each coroutine sent in to its end with ``yield from``, which takes a finished
    # coroutine's result without a StopIteration being raised, then yields FINISHED and waits for
    # the next. What a coroutine yields on the way passes straight out.
    coro = yield None
    while True:
        yield from coro
        coro = yield FINISHED


class EagerStepper:
    """Runs coroutines up to their first suspension, for a caller that expects most to finish there.

    Stepping with ``coro.send(None)`` costs a ``StopIteration`` per finished coroutine, caught by the
    caller; a compiled caller also records a traceback entry for it (a frame and a code object). The
    stepper instead sends each coroutine into a driver generator that runs it with ``yield from``
    and reports the end as :data:`FINISHED`, with no exception: in a micro-benchmark of a coroutine
    that returns at once, 182 ns per step against 446 ns for a caught ``StopIteration``.

    This module is not compiled on purpose: ``yield from`` a coroutine needs an interpreted
    generator-based coroutine.
    """

    __slots__ = ("_driver", "_suspended")

    def __init__(self) -> None:
        self._driver: Generator[Any, Any, None] | None = None
        self._suspended: Generator[Any, Any, None] | None = None

    def first_step(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> Any:
        """Run ``coro`` inside ``context`` up to its first suspension: what it yielded, or
        :data:`FINISHED` (its result is dropped). Its exceptions propagate.

        When it suspends, :meth:`take_suspended` gives what carries it on: resume that (with
        :class:`Resumption`), not ``coro``, which it drives.
        """
        driver, self._driver = self._driver, None  # taken: an exception would end it
        if driver is None:
            driver = _drive()
            driver.send(None)
        yielded = context.run(driver.send, coro)
        if yielded is FINISHED:
            self._driver = driver
        else:
            self._suspended = driver
        return yielded

    def take_suspended(self) -> Generator[Any, Any, None]:
        """The driver of the coroutine that suspended in the last :meth:`first_step`."""
        driver, self._suspended = self._suspended, None
        if driver is None:
            raise RuntimeError("no coroutine suspended in the last step")
        return driver


class Resumption:
    """Await the rest of ``coro``: a coroutine, or what :meth:`EagerStepper.take_suspended` gave
    (that one's result is dropped: awaiting it gives ``None``).

    ``yielded``: what its last manual step yielded (the future it waits on), or :data:`NOT_STARTED`.
    ``context``: run every step inside this :class:`contextvars.Context` (else the awaiting task's).
    ``throw``: an exception to deliver first (say, the cancellation of the task that will await this).
    """

    __slots__ = ("context", "coro", "throw", "yielded")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any] | Generator[Any, Any, Any],
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
                if yielded is FINISHED:  # an EagerStepper's driver: the coroutine it drove ended
                    return None
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
