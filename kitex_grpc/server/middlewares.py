"""The server's built-in middlewares (Kitex ``server/middlewares.go``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from types import CoroutineType
from typing import Any

from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import BizError, KitexError, RPCTimeoutError
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.suspension import Resumption

logger = logging.getLogger("kitex_grpc.server")


def server_timeout_middleware(next_endpoint: Endpoint) -> Endpoint:
    """Cancel the handler when the deadline from grpc-timeout (or TTHeader RPCTimeout) passes.

    The rest of the chain is stepped by hand first: a call that completes without ever waiting
    cannot be cancelled, so it needs no timer; the deadline is armed when the call first suspends.
    """

    def server_timeout(ri: RPCInfo, request: Any) -> Awaitable[Any]:
        deadline = ri.deadline
        if deadline is None:  # nothing to enforce: the next awaitable as is (one coroutine frame fewer)
            return next_endpoint(ri, request)
        return with_deadline(deadline, ri, request)

    async def with_deadline(deadline: float, ri: RPCInfo, request: Any) -> Any:
        if deadline <= time.monotonic():
            raise RPCTimeoutError(f"deadline passed before {ri.method.name} started")
        awaitable = next_endpoint(ri, request)
        if type(awaitable) is not CoroutineType and not isinstance(awaitable, Coroutine):  # ABC check last
            return await _within(deadline, ri, awaitable)
        try:
            yielded = awaitable.send(None)
        except StopIteration as done:
            return done.value
        return await _within(deadline, ri, Resumption(awaitable, yielded))

    return server_timeout


async def _within(deadline: float, ri: RPCInfo, awaitable: Awaitable[Any]) -> Any:
    try:
        async with asyncio.timeout(deadline - time.monotonic()):
            return await awaitable
    except TimeoutError as exc:
        if isinstance(exc, KitexError):
            raise
        raise RPCTimeoutError(f"handler of {ri.method.name} exceeded its deadline").with_cause(exc) from exc


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
