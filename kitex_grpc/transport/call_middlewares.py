"""The client's built-in middlewares (Kitex ``client/middlewares.go``): the RPC timeout and the mapping of
network errors.

They live in the transport layer, below discovery, so that a caller built on a client transport (the
etcd client, :mod:`kitex_grpc.discovery.grpc_caller`) runs the same two as a client does;
:mod:`kitex_grpc.client.middlewares` is their public home.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import KitexError, RemoteOrNetworkError, RPCTimeoutError
from kitex_grpc.rpcinfo import RPCInfo, inherited_deadline
from kitex_grpc.transport.deadlines import await_within

__all__ = ["error_mapping_middleware", "rpc_timeout_middleware"]


def rpc_timeout_middleware(next_endpoint: Endpoint) -> Endpoint:
    """Set ``ri.deadline`` from the RPC timeout and any inherited deadline; enforce it for unary calls.

    A handler's outgoing calls inherit what is left of the deadline of the call it serves. A stream's
    deadline bounds its whole life and is enforced by the transport (grpc-timeout).
    """

    # A plain function: without a deadline to enforce it hands back the next awaitable as it is,
    # one coroutine frame fewer per call; with one, the timed coroutine below.
    def rpc_timeout(ri: RPCInfo, request: Any) -> Awaitable[Any]:
        timeout = ri.config.rpc_timeout
        inherited = inherited_deadline()
        if timeout is None and inherited is None:
            return next_endpoint(ri, request)
        now = time.monotonic()
        deadline = now + timeout if timeout is not None else inherited
        if inherited is not None and deadline is not None and inherited < deadline:
            deadline = inherited
        assert deadline is not None
        ri.deadline = deadline
        if ri.method.mode.is_streaming:
            return next_endpoint(ri, request)
        return _timed(next_endpoint, ri, request, deadline, deadline - now)

    return rpc_timeout


async def _timed(
    next_endpoint: Endpoint, ri: RPCInfo, request: Any, deadline: float, remaining: float
) -> Any:
    if remaining <= 0:
        raise RPCTimeoutError(_timeout_detail(ri, "deadline already passed"))
    try:
        return await await_within(deadline, next_endpoint(ri, request))
    except TimeoutError as exc:  # the deadline's (DeadlineExceededError) or one from below
        if isinstance(exc, KitexError):
            raise
        raise RPCTimeoutError(_timeout_detail(ri, f"timeout={remaining:.3f}s")) from exc


def _timeout_detail(ri: RPCInfo, what: str) -> str:
    return f"{what}, to={ri.callee.service_name}, method={ri.method.name}, addr={ri.callee.address or '?'}"


def error_mapping_middleware(next_endpoint: Endpoint) -> Endpoint:
    """Everything below this point that is not already a KitexError becomes RemoteOrNetworkError.

    (Sits right above the transport; a transport with ``network_errors_mapped`` is called directly.)
    """

    async def error_mapping(ri: RPCInfo, request: Any) -> Any:
        try:
            return await next_endpoint(ri, request)
        except KitexError:
            raise
        except (OSError, EOFError, ConnectionError) as exc:
            raise RemoteOrNetworkError(f"{type(exc).__name__}: {exc}").with_cause(exc) from exc

    return error_mapping
