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

    A call with a deadline runs the rest of the chain inside ``asyncio.timeout``: a call that ends
    without ever waiting cannot be cancelled and ends as it would without one.
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
            async with asyncio.timeout(deadline - time.monotonic()):
                return await next_endpoint(ri, request)
        except TimeoutError as exc:
            if isinstance(exc, KitexError):
                raise
            error = RPCTimeoutError(f"handler of {ri.method.name} exceeded its deadline")
            raise error.with_cause(exc) from exc

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
