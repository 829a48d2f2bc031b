"""The generic client: one chain, built once, in Kitex's documented order.

Outermost first (ARCHITECTURE.md "Middleware order", Kitex ``client/client.go initMiddlewares``)::

    retry/backup container      (slot; filled by the governance work)
    service circuit breaker     (slot)
    rpc_timeout                 sets ri.deadline, raises RPCTimeoutError
    user middlewares            in option order
    acl                         (slot)
    discovery                   resolve + pick an instance
    instance circuit breaker    (slot)
    instance middlewares        in option order
    error_mapping               foreign errors -> RemoteOrNetworkError
    transport                   grpcio / h2 / ttheader

A slot that is not configured holds no middleware at all, so it costs nothing per call.
"""

from __future__ import annotations

from typing import Any

from kitex_grpc import callopt as _callopt
from kitex_grpc.client.middlewares import (
    error_mapping_middleware,
    rpc_timeout_middleware,
    static_discovery_middleware,
)
from kitex_grpc.endpoint import Endpoint, Middleware, chain
from kitex_grpc.errors import InternalError
from kitex_grpc.options.client import ClientOptions
from kitex_grpc.rpcinfo import EndpointInfo, RPCConfig, RPCInfo
from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo, StreamingMode
from kitex_grpc.streaming import (
    BidiStreamCall,
    ClientStreamCall,
    ServerStreamCall,
    Stream,
    StreamArgs,
    StreamIO,
)
from kitex_grpc.transport import new_client_transport
from kitex_grpc.transport.base import ClientTransport


class Client:
    """A client of one service. Make it with :func:`kitex_grpc.new_client` or generated ``new_client``."""

    def __init__(self, service: ServiceInfo, dest_service: str, options: ClientOptions) -> None:
        if not dest_service:
            raise ValueError("new_client: the destination service name must be non-empty")
        self._service = service
        self._dest = dest_service
        self._options = options
        self._transport: ClientTransport = new_client_transport(options)
        self._caller = EndpointInfo(options.service_name)
        self._tags = dict(options.tags)
        self._unary_config = RPCConfig(
            options.rpc_timeout,
            options.connect_timeout,
            options.transport_protocol,
            options.compression,
            options.rpc_timeout is not None,
        )
        # Kitex applies WithRPCTimeout to unary calls only; streams take a deadline per call.
        self._stream_config = RPCConfig(
            None, options.connect_timeout, options.transport_protocol, options.compression, False
        )
        named = self._middlewares()
        self.chain_names: tuple[str, ...] = (*(name for name, _ in named), "transport")
        middlewares = [mw for _, mw in named]
        self._unary: Endpoint = chain(middlewares, self._transport.unary)
        self._stream: Endpoint = chain(middlewares, self._transport_stream)
        self._unary_methods = {
            name: mi
            for name, mi in service.methods.items()
            if mi.mode in (StreamingMode.UNARY, StreamingMode.NONE)
        }
        self._closed = False

    def _middlewares(self) -> list[tuple[str, Middleware]]:
        opts = self._options
        named: list[tuple[str, Middleware]] = [("rpc_timeout", rpc_timeout_middleware)]
        named.extend((f"user:{_name(mw)}", mw) for mw in opts.middlewares)
        named.append(("discovery", static_discovery_middleware(opts.host_ports)))
        named.extend((f"instance:{_name(mw)}", mw) for mw in opts.instance_middlewares)
        named.append(("error_mapping", error_mapping_middleware))
        return named

    @property
    def options(self) -> ClientOptions:
        return self._options

    @property
    def service_info(self) -> ServiceInfo:
        return self._service

    # -- calls ----------------------------------------------------------------------------------------

    async def call(self, method: str, request: Any, *opts: _callopt.CallOption) -> Any:
        """Make a unary (or one-way) call and return the reply (``None`` for one-way)."""
        mi = self._unary_methods.get(method)
        if mi is None or self._closed:
            mi = self._method(method, (StreamingMode.UNARY, StreamingMode.NONE))
        ri = self._new_rpcinfo(mi, opts, self._unary_config)
        if mi.pack_request is not None:
            request = mi.pack_request(request)
        try:
            reply = await self._unary(ri, request)
        except BaseException as exc:
            ri.stats.finish(exc)
            raise
        ri.stats.finish(None)
        if mi.unpack_response is not None and not mi.oneway:
            return mi.unpack_response(reply)
        return reply

    def server_stream(self, method: str, request: Any, *opts: _callopt.CallOption) -> ServerStreamCall[Any]:
        """Start a server-streaming call; iterate the result for the replies."""
        mi = self._method(method, (StreamingMode.SERVER,))
        ri = self._new_rpcinfo(mi, opts)

        async def open_stream() -> Stream[Any, Any]:
            stream: Stream[Any, Any] = await self._open(ri, Stream, StreamArgs(request))
            await stream.send(request)
            await stream.close_send()
            return stream

        return ServerStreamCall(open_stream)

    async def client_stream(self, method: str, *opts: _callopt.CallOption) -> ClientStreamCall[Any, Any]:
        """Open a client-streaming call: ``send`` requests, then ``close_and_recv``."""
        mi = self._method(method, (StreamingMode.CLIENT,))
        stream: ClientStreamCall[Any, Any] = await self._open(self._new_rpcinfo(mi, opts), ClientStreamCall)
        return stream

    async def bidi_stream(self, method: str, *opts: _callopt.CallOption) -> BidiStreamCall[Any, Any]:
        """Open a bidirectional stream."""
        mi = self._method(method, (StreamingMode.BIDIRECTIONAL,))
        stream: BidiStreamCall[Any, Any] = await self._open(self._new_rpcinfo(mi, opts), BidiStreamCall)
        return stream

    async def _open(self, ri: RPCInfo, kind: type[Any], args: StreamArgs | None = None) -> Any:
        try:
            io: StreamIO = await self._stream(ri, args or StreamArgs())
        except BaseException as exc:
            ri.stats.finish(exc)
            raise
        opts = self._options
        return kind(ri, io, opts.stream_send_middlewares, opts.stream_recv_middlewares)

    async def _transport_stream(self, ri: RPCInfo, _args: StreamArgs) -> StreamIO:
        return await self._transport.open_stream(ri)

    # -- plumbing -------------------------------------------------------------------------------------

    def _method(self, name: str, modes: tuple[StreamingMode, ...]) -> MethodInfo:
        mi = self._service.methods.get(name)
        if mi is None:
            raise InternalError(f"non-existent method {name!r} in service {self._service.full_name!r}")
        if mi.mode not in modes:
            raise InternalError(f"method {name!r} is {mi.mode.name}; use the matching call for that mode")
        if self._closed:
            raise InternalError("client is closed")
        return mi

    def _new_rpcinfo(
        self, mi: MethodInfo, opts: tuple[_callopt.CallOption, ...], config: RPCConfig | None = None
    ) -> RPCInfo:
        if config is None:
            config = self._stream_config if mi.mode.is_streaming else self._unary_config
        callee = EndpointInfo(self._dest, mi.name, "", self._tags)
        if not opts:
            return RPCInfo(self._caller, callee, self._service, mi, config)
        co = _callopt.apply_all(opts)
        if co.rpc_timeout_set or co.connect_timeout is not None or co.compression is not None:
            config = RPCConfig(
                co.rpc_timeout if co.rpc_timeout_set else config.rpc_timeout,
                co.connect_timeout if co.connect_timeout is not None else config.connect_timeout,
                config.transport_protocol,
                co.compression or config.compression,
                config.rpc_timeout_set or (co.rpc_timeout_set and co.rpc_timeout is not None),
            )
        if co.host_port is not None:
            callee.address = co.host_port
        if co.tags:
            callee.tags = {**self._tags, **co.tags}
        return RPCInfo(self._caller, callee, self._service, mi, config, co.metadata)

    async def close(self) -> None:
        """Close every connection; calls made afterwards fail with InternalError."""
        if not self._closed:
            self._closed = True
            await self._transport.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _name(middleware: object) -> str:
    return str(
        getattr(middleware, "__qualname__", None) or getattr(middleware, "__name__", None) or middleware
    )
