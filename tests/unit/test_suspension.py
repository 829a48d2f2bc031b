"""Stepping a coroutine by hand, then finishing it as if it had been awaited (kitex_grpc/suspension.py)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from kitex_grpc.suspension import FINISHED, EagerStepper, Resumption

_seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="outside")


async def _finishes(mark: str) -> str:
    _seen.set(mark)
    return "result"


async def _fails() -> None:
    raise ValueError("boom")


def test_coroutines_that_end_in_their_first_step_are_finished_in_their_own_contexts() -> None:
    stepper = EagerStepper()
    first, second = contextvars.copy_context(), contextvars.copy_context()
    assert stepper.first_step(_finishes("one"), first) is FINISHED
    assert stepper.first_step(_finishes("two"), second) is FINISHED  # the same driver, reused
    assert (first.get(_seen), second.get(_seen), _seen.get()) == ("one", "two", "outside")
    with pytest.raises(RuntimeError, match="no coroutine suspended"):
        stepper.take_suspended()


def test_an_exception_of_the_first_step_propagates_and_the_next_step_still_runs() -> None:
    stepper = EagerStepper()
    with pytest.raises(ValueError, match="boom"):
        stepper.first_step(_fails(), contextvars.copy_context())
    context = contextvars.copy_context()
    assert stepper.first_step(_finishes("after"), context) is FINISHED
    assert context.get(_seen) == "after"


def test_a_suspended_coroutine_is_finished_by_a_resumption_of_its_driver() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        gate = loop.create_future()
        steps: list[str] = []

        async def waits() -> None:
            steps.append("before")
            steps.append(f"after {await gate}")
            _seen.set("resumed")

        stepper = EagerStepper()
        context = contextvars.copy_context()
        yielded = stepper.first_step(waits(), context)
        assert yielded is gate and steps == ["before"]
        task = asyncio.ensure_future(_await(Resumption(stepper.take_suspended(), yielded, context)))
        # meanwhile the stepper serves others with a new driver
        assert stepper.first_step(_finishes("other"), contextvars.copy_context()) is FINISHED
        gate.set_result("go")
        assert await asyncio.wait_for(task, 5) is None  # a driven coroutine's result is dropped
        assert context.get(_seen) == "resumed"
        return steps

    assert asyncio.run(main()) == ["before", "after go"]


def test_cancelling_the_awaiting_task_reaches_the_driven_coroutine() -> None:
    async def main() -> list[str]:
        never = asyncio.get_running_loop().create_future()
        events: list[str] = []

        async def waits_forever() -> None:
            try:
                await never
            except asyncio.CancelledError:
                events.append("cancelled")
                raise

        stepper = EagerStepper()
        context = contextvars.copy_context()
        yielded = stepper.first_step(waits_forever(), context)
        started = asyncio.Event()
        task = asyncio.ensure_future(_await(Resumption(stepper.take_suspended(), yielded, context), started))
        await asyncio.wait_for(started.wait(), 5)  # set in the task's step that goes on to wait
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        return events

    assert asyncio.run(main()) == ["cancelled"]


async def _await(resumption: Resumption, started: asyncio.Event | None = None) -> object:
    if started is not None:
        started.set()
    return await resumption
