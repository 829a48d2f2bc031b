"""Fallback (Kitex ``pkg/fallback``): after every attempt (retries included), a function may replace
the error, or the reply, with its own.

The function is called as ``func(ri, request, reply, error)`` and returns the reply to use (or
raises). :func:`error_fallback` runs it only on an error, :func:`timeout_and_cb_fallback` only on a
timeout or a circuit break, :class:`FallbackPolicy` directly on every call.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kitex_grpc.errors import CircuitBreakError, RPCTimeoutError

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

FallbackFunc = Callable[["RPCInfo", Any, Any, "BaseException | None"], Any]

CALL_FALLBACK_KEY = "kitex.fallback"
"""``ri.extra`` key holding a per-call policy from ``callopt.with_fallback``."""


@dataclasses.dataclass(frozen=True, slots=True)
class FallbackPolicy:
    """Kitex ``fallback.Policy``: ``when`` is ``"always"``, ``"error"`` or ``"timeout_and_cb"``."""

    func: FallbackFunc
    when: str = "always"

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise TypeError("FallbackPolicy: func must be callable")
        if self.when not in ("always", "error", "timeout_and_cb"):
            raise ValueError(f"FallbackPolicy: unknown when={self.when!r}")

    def applies(self, error: BaseException | None) -> bool:
        if self.when == "always":
            return True
        if error is None:
            return False
        if self.when == "error":
            return True
        return isinstance(error, RPCTimeoutError | CircuitBreakError)

    async def run(self, ri: RPCInfo, request: Any, reply: Any, error: BaseException | None) -> Any:
        """The reply after fallback; re-raises ``error`` when the policy does not apply."""
        if not self.applies(error):
            if error is not None:
                raise error
            return reply
        result = self.func(ri, request, reply, error)
        if inspect.isawaitable(result):
            result = await result
        return result


def error_fallback(func: FallbackFunc) -> FallbackPolicy:
    """Kitex ``fallback.ErrorFallback``: fall back on any error."""
    return FallbackPolicy(func, "error")


def timeout_and_cb_fallback(func: FallbackFunc) -> FallbackPolicy:
    """Kitex ``fallback.TimeoutAndCBFallback``: fall back on timeouts and circuit breaks only."""
    return FallbackPolicy(func, "timeout_and_cb")
