"""Handlers and waits shared by the live-config tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support import EchoService, Req

FAILURE_RETRY_ONCE = {
    "enable": True,
    "type": 0,
    "failure_policy": {"stop_policy": {"max_retry_times": 1, "cb_policy": {"error_rate": 0.3}}},
}


class Flaky(EchoService):
    """``flaky``: every odd call hangs until cancelled, every even call answers (a timeout, then a
    success: what a failure retry of timeouts turns into a success). ``slow:<ms>``: answer after
    that many milliseconds."""

    async def Unary(self, request: Req) -> Any:
        msg = request.message
        if msg == "flaky" or msg.startswith("slow:"):
            self.calls += 1
            async with self._arrivals:
                self._arrivals.notify_all()
        if msg == "flaky":
            if self.calls % 2 == 1:
                await asyncio.Event().wait()
            return await super()._behave(request)
        if msg.startswith("slow:"):
            await asyncio.sleep(int(msg[5:]) / 1000)
            return await super()._behave(request)
        return await super().Unary(request)


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 5.0, step: float = 0.01) -> float:
    """Run ``check`` (a call whose outcome shows the config in force) until it holds; the time it
    took. Bounded: fails the test after ``seconds``."""
    start = time.monotonic()
    async with asyncio.timeout(seconds):
        for _ in range(int(seconds / step) + 1):
            if await check():
                return time.monotonic() - start
            await asyncio.sleep(step)
    raise AssertionError(f"the condition did not hold within {seconds} s")
