"""Stepping a coroutine by hand, then finishing it as if it had been awaited (kitex_grpc/suspension.py)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from kitex_grpc.suspension import FINISHED, NOT_STARTED, Resumption, first_step

_seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="outside")


async def _finishes() -> str:
    _seen.set("inside")
    return "result"


async def _fails() -> None:
    raise ValueError("boom")


def test_a_coroutine_that_ends_in_its_first_step_is_finished_and_ran_in_the_context() -> None:
    context = contextvars.copy_context()
    assert first_step(_finishes(), context) is FINISHED
    assert context.get(_seen) == "inside" and _seen.get() == "outside"


def test_an_exception_of_the_first_step_propagates() -> None:
    with pytest.raises(ValueError, match="boom"):
        first_step(_fails(), contextvars.copy_context())


def test_a_suspended_coroutine_yields_its_future_and_a_resumption_finishes_it() -> None:
    async def main() -> list[str]:
        gate = asyncio.get_running_loop().create_future()
        steps: list[str] = []

        async def waits() -> str:
            steps.append("before")
            value: str = await gate
            steps.append(f"after {value}")
            return value.upper()

        coro = waits()
        context = contextvars.copy_context()
        yielded = first_step(coro, context)
        assert yielded is gate and yielded is not NOT_STARTED and steps == ["before"]
        task = asyncio.ensure_future(_await(Resumption(coro, yielded, context)))
        gate.set_result("go")
        assert await asyncio.wait_for(task, 5) == "GO"
        return steps

    assert asyncio.run(main()) == ["before", "after go"]


async def _await(resumption: Resumption) -> str:
    result: str = await resumption
    return result
