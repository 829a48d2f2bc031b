"""What a server's transports call into for each request (``transport.base.CallDispatcher``).

:class:`Dispatcher` finds the method a request names, builds the call's RPCInfo, installs the
received metainfo and runs the server's chain. Every served call passes through it; the
:class:`~kitex_grpc.server.Server` that owns it builds the chain and registers the handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kitex_grpc import metainfo
from kitex_grpc.endpoint import Endpoint
from kitex_grpc.observability.tracer import Tracer, run_traced
from kitex_grpc.rpcinfo import RPCConfig, RPCInfo, served_rpcinfo, set_current
from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo
from kitex_grpc.streaming import Stream, StreamIO
from kitex_grpc.transport.call_head import CallHead

__all__ = ["Dispatcher", "Invoker", "RegisteredMethod", "unary_invoker"]

Invoker = Callable[[RPCInfo, Any], Any]


class RegisteredMethod:
    """A method of a registered service, bound to its handler."""

    __slots__ = ("invoke", "method", "service")

    def __init__(self, service: ServiceInfo, method: MethodInfo, invoke: Invoker) -> None:
        self.service = service
        self.method = method
        self.invoke = invoke


class Dispatcher:
    """The registered methods and the chain they run through, as the transports see them.

    ``callee_service``: the name a served call's RPCInfo gives the callee (``with_service_name``),
    or empty for the service's own name. :meth:`invoke` is the chain's last endpoint; the owner sets
    :attr:`endpoint` (the whole chain) and :attr:`tracer` once it has built them.
    """

    __slots__ = (
        "_callee_service",
        "_config",
        "_stream_recv",
        "_stream_send",
        "endpoint",
        "invokers",
        "methods",
        "services",
        "tracer",
        "unknown",
        "unknown_invoker",
    )

    def __init__(
        self,
        callee_service: str,
        config: RPCConfig,
        stream_send_middlewares: Sequence[Any],
        stream_recv_middlewares: Sequence[Any],
    ) -> None:
        self._callee_service = callee_service
        self._config = config
        self._stream_send = stream_send_middlewares
        self._stream_recv = stream_recv_middlewares
        self.services: dict[str, ServiceInfo] = {}
        self.methods: dict[tuple[str, str], RegisteredMethod] = {}
        self.invokers: dict[MethodInfo, Invoker] = {}
        self.endpoint: Endpoint = self.invoke
        self.tracer: Tracer | None = None
        # The unknown-service/method handler (kitex_grpc.generic.register_unknown_handler): makes an
        # entry for a (service, method) nothing registered; its calls go to unknown_invoker.
        self.unknown: Callable[[str, str], RegisteredMethod] | None = None
        self.unknown_invoker: Invoker | None = None

    def register(self, service: ServiceInfo, method: MethodInfo, invoke: Invoker) -> None:
        self.methods[(service.service_name, method.name)] = RegisteredMethod(service, method, invoke)
        self.invokers[method] = invoke

    def lookup(self, service_name: str, method_name: str) -> RegisteredMethod | None:
        entry = self.methods.get((service_name, method_name))
        if entry is None and self.unknown is not None:
            return self.unknown(service_name, method_name)
        return entry

    def search_service(self, service_name: str, method_name: str) -> ServiceInfo | None:
        """Kitex ``SearchService(name, method, strict=false)`` (``server/service.go``), what both the
        TTHeader and the TTHeader Streaming server route by: without a name, the first registered
        service with the method; with one, the service of that name, else the only service with the
        method (none when two have it); then the unknown-service handler, if any."""
        services = self.services
        if service_name:
            found = services.get(service_name)
            if found is None:
                having = [service for service in services.values() if method_name in service.methods]
                found = having[0] if len(having) == 1 else None
        else:
            found = next((service for service in services.values() if method_name in service.methods), None)
        if found is None and self.unknown is not None:
            return self.unknown(service_name, method_name).service
        return found

    def serve_unary(self, head: CallHead, request: Any) -> Awaitable[Any]:
        """Run a unary call through the chain; awaiting the result gives the reply."""
        # Plain functions returning the next awaitable (here, in invoke and in the unary invokers):
        # one coroutine frame fewer per layer on every call. Each runs when its caller awaits it.
        ri = self._begin(head)
        tracer = self.tracer
        if tracer is None:  # what run_traced does without a tracer, one call fewer
            return self.endpoint(ri, request)
        return run_traced(self.endpoint, ri, request, tracer)

    def serve_stream(self, head: CallHead, io: StreamIO) -> Awaitable[None]:
        """Run a streaming call through the chain over ``io``; awaiting the result runs the handler."""
        ri = self._begin(head)
        stream: Stream[Any, Any] = Stream(ri, io, self._stream_send, self._stream_recv)
        result: Awaitable[None] = run_traced(self.endpoint, ri, stream, self.tracer)
        return result

    def _begin(self, head: CallHead) -> RPCInfo:
        """The preamble of every served call, whatever the transport: the received metainfo
        installed for the current task, the RPCInfo built and made current, both left on ``head``."""
        head.backward = metainfo.begin_server_call(head.transient, head.persistent)
        entry = head.entry
        service: ServiceInfo = entry.service
        ri = served_rpcinfo(
            self._callee_service or service.service_name,
            head.peer,
            head.local,
            service,
            entry.method,
            self._config,
            head.metadata,
            head.deadline,
            head.caller_service,
            head.caller_method,
        )
        ri.seq_id = head.seq_id
        head.ri = ri
        set_current(ri)
        return ri

    def invoke(self, ri: RPCInfo, request: Any) -> Awaitable[Any]:
        """The chain's last endpoint: the handler of ``ri.method``."""
        invoker = self.invokers.get(ri.method)
        if invoker is None:  # an entry made by the unknown-service handler
            invoker = self.unknown_invoker
            assert invoker is not None
        result: Awaitable[Any] = invoker(ri, request)
        return result


def unary_invoker(method: MethodInfo, fn: Callable[..., Any]) -> Invoker:
    """The endpoint-shaped ``(ri, request)`` call of a unary handler ``fn(request)``."""
    if method.adapt_handler is not None:
        adapted = method.adapt_handler(fn)

        def unary_adapted(ri: RPCInfo, request: Any) -> Any:
            return adapted(request)

        return unary_adapted

    def unary(ri: RPCInfo, request: Any) -> Any:
        return fn(request)

    return unary
