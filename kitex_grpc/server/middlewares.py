"""The server's built-in middlewares (Kitex ``server/middlewares.go``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any

from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import BizError, KitexError, RPCTimeoutError
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.transport.deadlines import DeadlineExceededError, await_within

logger = logging.getLogger("kitex_grpc.server")


def server_timeout_middleware(next_endpoint: Endpoint) -> Endpoint:
    """Cancel the handler when the deadline from grpc-timeout (or TTHeader RPCTimeout) passes.

    The call's task is cancelled at the deadline (one loop timer for all calls in flight:
    :mod:`kitex_grpc.transport.deadlines`); the cancellation becomes :class:`RPCTimeoutError` unless
    something else cancelled the task too (then it stays a cancellation), as with ``asyncio.timeout``.
    """

    def server_timeout(ri: RPCInfo, request: Any) -> Awaitable[Any]:
        deadline = ri.deadline
        if deadline is None:  # nothing to enforce: the next awaitable as is (one coroutine frame fewer)
            return next_endpoint(ri, request)
        return with_deadline(deadline, ri, request)

    async def with_deadline(deadline: float, ri: RPCInfo, request: Any) -> Any:
        if deadline <= time.monotonic():
            raise RPCTimeoutError(f"deadline passed before {ri.method.name} started")
        try:
            return await await_within(deadline, next_endpoint(ri, request))
        except DeadlineExceededError as exc:
            cancelled = exc.__cause__ or exc
            error = RPCTimeoutError(f"handler of {ri.method.name} exceeded its deadline")
            raise error.with_cause(cancelled) from cancelled

    return server_timeout


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
