"""The narrow interface between the chain and a transport.

A client transport has one method for unary (and one-way) calls and one to open a stream; the
chain's innermost endpoint calls them. A server transport accepts connections, decodes calls, and
hands each to the :class:`CallDispatcher` (the server) in one call per call kind, with a
:class:`~kitex_grpc.transport.call_head.CallHead`; the dispatcher runs the chain and the handler.
Transports translate their own failures into :mod:`kitex_grpc.errors` at this boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from kitex_grpc.rpcinfo import RPCInfo
    from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo
    from kitex_grpc.streaming import StreamIO
    from kitex_grpc.transport.call_head import CallHead


class ClientTransport(Protocol):
    async def unary(self, ri: RPCInfo, request: Any) -> Any:
        """Send ``request`` to ``ri.callee.address`` and return the reply (``None`` for one-way)."""
        ...

    async def open_stream(self, ri: RPCInfo) -> StreamIO:
        """Open a stream to ``ri.callee.address``; its deadline is ``ri.deadline``."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class SupportsCloseAddress(Protocol):
    """Optional client-transport method: drop the connection(s) kept for one instance.

    The discovery bridge calls it when an instance leaves the resolver's result (Kitex's connection
    pool cleans removed addresses). Transports keep one connection, or one pool, per address and
    create it again on the next call to that address.
    """

    async def close_address(self, address: str) -> None: ...


NETWORK_ERRORS_MAPPED = "network_errors_mapped"
"""Optional client-transport attribute: ``True`` when ``unary`` never lets an ``OSError``,
``EOFError`` or ``ConnectionError`` out (its network failures are already KitexErrors), so the
client's ``error_mapping`` middleware has nothing to do and passes the call straight through."""


@runtime_checkable
class SupportsPreconnect(Protocol):
    """Optional client-transport method: open the connection to ``address`` now (warm-up)."""

    async def preconnect(self, address: str, connect_timeout: float, conns: int | None = None) -> None:
        """Warm-up: connect to ``address`` now (``conns`` connections on a pooled transport)."""
        ...


@runtime_checkable
class SupportsConnectionLimit(Protocol):
    """Optional server-transport method: count connections at accept time and refuse the excess.

    ``limiter`` has ``acquire(conn) -> bool`` and ``release(conn)``
    (:class:`kitex_grpc.governance.limiter.ConnectionLimiter`). Without this method the server's
    limit middleware counts peers with a call in flight instead.
    """

    def limit_connections(self, limiter: Any) -> None: ...


class MethodEntry(Protocol):
    """A registered method as a server transport sees it."""

    service: ServiceInfo
    method: MethodInfo


class CallDispatcher(Protocol):
    """What a server transport calls into: :class:`kitex_grpc.server.dispatch.Dispatcher`, which a
    :class:`kitex_grpc.server.Server` owns (``server.dispatcher``)."""

    def lookup(self, service_name: str, method_name: str) -> MethodEntry | None:
        """Find a method by service name (the package is ignored, as Kitex does) and method name."""
        ...

    def search_service(self, service_name: str, method_name: str) -> ServiceInfo | None:
        """Kitex ``SearchService(name, method, strict=false)`` (``server/service.go``): without a name
        the first registered service that has ``method_name``; with one the service of that name, else
        the only service that has the method; ``None`` when there is none."""
        ...

    def serve_unary(self, head: CallHead, request: Any) -> Awaitable[Any]:
        """Serve a decoded unary call: install ``head``'s metainfo, build the call's RPCInfo and run
        the chain; awaiting the result gives the reply or raises the handler's error.

        Before returning it fills ``head.ri`` and ``head.backward``, which the transport reads to
        answer (response trailers, backward metainfo). A plain function, not a coroutine: the
        awaitable it returns is the chain's own, so the call costs no extra frame.
        """
        ...

    def serve_stream(self, head: CallHead, io: StreamIO) -> Awaitable[None]:
        """Serve a decoded streaming call over ``io``, as :meth:`serve_unary` does a unary one;
        awaiting the result runs the handler to its end."""
        ...


class ServerTransport(Protocol):
    @property
    def address(self) -> str:
        """The bound ``host:port`` (valid after :meth:`start`)."""
        ...

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight calls finish within ``grace`` seconds, then close."""
        ...
