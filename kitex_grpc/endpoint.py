"""Endpoint and Middleware: the one composition unit (Kitex ``pkg/endpoint``).

An :data:`Endpoint` takes the call's :class:`~kitex_grpc.rpcinfo.RPCInfo` and the request and returns
the response. A :data:`Middleware` wraps an endpoint in another. For a unary call the request and
response are messages. For a streaming call the client's request is a
:class:`~kitex_grpc.streaming.StreamArgs` and its response the opened stream; the server's request
is the server-side stream and the endpoint returns when the handler is done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

Endpoint = Callable[["RPCInfo", Any], Awaitable[Any]]
Middleware = Callable[[Endpoint], Endpoint]


def identity(next_endpoint: Endpoint) -> Endpoint:
    """The middleware that adds nothing; unconfigured features return it and the chain drops it."""
    return next_endpoint


def chain(middlewares: Sequence[Middleware], endpoint: Endpoint) -> Endpoint:
    """Wrap ``endpoint`` so that ``middlewares[0]`` is outermost, as ``endpoint.Chain`` does in Kitex."""
    for middleware in reversed(middlewares):
        if middleware is identity:
            continue
        endpoint = middleware(endpoint)
    return endpoint
