"""The server's built-in middlewares (Kitex ``server/middlewares.go``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import BizError, KitexError, RPCTimeoutError
from kitex_grpc.rpcinfo import RPCInfo

logger = logging.getLogger("kitex_grpc.server")


def server_timeout_middleware(next_endpoint: Endpoint) -> Endpoint:
    """Cancel the handler when the deadline from grpc-timeout (or TTHeader RPCTimeout) passes.

    A call with a deadline arms one timer on the loop that cancels the call's task when the deadline
    passes; the cancellation becomes :class:`RPCTimeoutError` unless something else cancelled the task
    too (then it stays a cancellation). This is what ``asyncio.timeout`` does, without its context
    manager: 3.4 µs per call against 6.3 µs on Python 3.11 (a micro-benchmark, both public API).
    """

    def server_timeout(ri: RPCInfo, request: Any) -> Awaitable[Any]:
        deadline = ri.deadline
        if deadline is None:  # nothing to enforce: the next awaitable as is (one coroutine frame fewer)
            return next_endpoint(ri, request)
        return with_deadline(deadline, ri, request)

    async def with_deadline(deadline: float, ri: RPCInfo, request: Any) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RPCTimeoutError(f"deadline passed before {ri.method.name} started")
        task = asyncio.current_task()
        if task is None:  # not on a task (no transport of ours does this): nothing to cancel
            return await next_endpoint(ri, request)
        loop = asyncio.get_running_loop()
        expired: list[bool] = []
        timer = loop.call_at(loop.time() + remaining, _expire, task, expired)
        try:
            result = await next_endpoint(ri, request)
        except asyncio.CancelledError as exc:
            timer.cancel()
            # The deadline's cancellation, and no other pending: the call timed out.
            if expired and task.uncancel() == 0:
                error = RPCTimeoutError(f"handler of {ri.method.name} exceeded its deadline")
                raise error.with_cause(exc) from exc
            raise
        except BaseException:
            timer.cancel()
            if expired:  # the handler caught the deadline's cancellation and raised something else
                task.uncancel()
            raise
        timer.cancel()
        if expired:  # the handler caught the deadline's cancellation and returned
            task.uncancel()
        return result

    return server_timeout


def _expire(task: asyncio.Task[Any], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()


def handler_error_middleware(next_endpoint: Endpoint) -> Endpoint:
    """A handler's ordinary exception becomes BizError (Kitex ErrBiz); KitexErrors pass unchanged.

    The exception is logged with its traceback once, here; the server keeps serving.
    """

    async def handler_error(ri: RPCInfo, request: Any) -> Any:
        try:
            return await next_endpoint(ri, request)
        except KitexError:
            raise
        except Exception as exc:
            logger.warning(
                "handler %s/%s raised %s",
                ri.service.full_name,
                ri.method.name,
                type(exc).__name__,
                exc_info=True,
            )
            raise BizError(str(exc) or type(exc).__name__).with_cause(exc) from exc

    return handler_error
