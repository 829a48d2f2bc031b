"""transport/deadlines.py: one loop timer enforces the deadlines of every call in flight."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from kitex_grpc.transport import deadlines
from kitex_grpc.transport.deadlines import DeadlineExceededError, await_within

LIMIT = 5.0  # seconds: every test ends well inside it, or fails


async def _hold(event: asyncio.Event, started: asyncio.Event | None = None) -> str:
    if started is not None:  # set once await_within has taken the call in
        started.set()
    await event.wait()
    return "held"


def _after(seconds: float) -> float:
    return time.monotonic() + seconds  # a deadline is absolute time.monotonic()


async def test_a_call_past_its_deadline_is_cancelled_and_says_so() -> None:
    never = asyncio.Event()
    async with asyncio.timeout(LIMIT):  # on this task, as the deadline: each takes back only its own
        with pytest.raises(DeadlineExceededError) as caught:
            await await_within(_after(0.02), _hold(never))
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the deadline's cancellation is taken back


async def test_a_call_that_ends_in_time_returns_and_is_never_cancelled_later() -> None:
    ready = asyncio.Event()
    ready.set()
    assert await await_within(_after(0.05), _hold(ready)) == "held"
    # The task goes on past that deadline, into a call of its own that expires later. Were the ended
    # call's entry still watched, its deadline would cancel the task inside this second call, which
    # would then end in a plain cancellation instead of its own DeadlineExceededError.
    async with asyncio.timeout(LIMIT):
        with pytest.raises(DeadlineExceededError):
            await await_within(_after(0.1), _hold(asyncio.Event()))
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_an_earlier_deadline_arriving_later_moves_the_timer() -> None:
    never, started = asyncio.Event(), asyncio.Event()
    # The timer is armed for 10 s by the first call; the second, due in 20 ms, must not wait for it.
    slow = asyncio.ensure_future(await_within(_after(10.0), _hold(never, started)))
    async with asyncio.timeout(LIMIT):
        await started.wait()
    async with asyncio.timeout(LIMIT):
        with pytest.raises(DeadlineExceededError):
            await await_within(_after(0.02), _hold(never))
    assert not slow.done()  # its own deadline is far away
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow


async def test_each_of_many_calls_expires_at_its_own_deadline_and_the_rest_complete() -> None:
    never, ready = asyncio.Event(), asyncio.Event()
    expiring = [
        asyncio.ensure_future(await_within(_after(0.01 * (1 + i % 5)), _hold(never))) for i in range(50)
    ]
    completing = [asyncio.ensure_future(await_within(_after(LIMIT), _hold(ready))) for _ in range(50)]
    done, pending = await asyncio.wait(expiring, timeout=LIMIT)
    assert not pending
    assert all(isinstance(task.exception(), DeadlineExceededError) for task in done)
    assert not any(task.done() for task in completing)
    ready.set()
    async with asyncio.timeout(LIMIT):
        assert await asyncio.gather(*completing) == ["held"] * 50


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    never, started = asyncio.Event(), asyncio.Event()
    call = asyncio.ensure_future(await_within(_after(LIMIT), _hold(never, started)))
    async with asyncio.timeout(LIMIT):
        await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError) as caught:
        await call
    assert not isinstance(caught.value, DeadlineExceededError)


async def test_a_call_that_swallows_the_deadline_returns_with_the_cancellation_taken_back() -> None:
    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "swallowed"
        return "unreachable"

    async with asyncio.timeout(LIMIT):
        assert await await_within(_after(0.02), stubborn()) == "swallowed"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


def test_each_event_loop_enforces_its_own_calls() -> None:
    async def one_expiry() -> None:
        async with asyncio.timeout(LIMIT):
            with pytest.raises(DeadlineExceededError):
                await await_within(_after(0.02), _hold(asyncio.Event()))

    # Two loops one after the other: the second must not depend on the first's (closed) timer.
    asyncio.run(one_expiry())
    asyncio.run(one_expiry())


def test_on_uvloop_each_expiry_fires_the_timer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvloop's timers count whole milliseconds and can fire just before the deadline they were armed
    # for; re-arming until the deadline passed spun the loop about 140 times per expiry.
    fired: list[float] = []
    fire = deadlines._LoopDeadlines._fire

    def counted(self: deadlines._LoopDeadlines) -> None:
        fired.append(time.monotonic())
        fire(self)

    monkeypatch.setattr(deadlines._LoopDeadlines, "_fire", counted)

    async def expiries() -> None:
        async with asyncio.timeout(LIMIT):
            for _ in range(10):
                with pytest.raises(DeadlineExceededError):
                    await await_within(_after(0.0123), _hold(asyncio.Event()))

    uvloop.run(expiries())
    assert len(fired) == 10
