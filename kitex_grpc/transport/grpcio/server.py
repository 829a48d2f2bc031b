"""Server transport on grpc.aio: one generic handler leads every call into the server's chain."""

from __future__ import annotations

import time
from typing import Any

import grpc

from kitex_grpc import grpc_meta, metainfo
from kitex_grpc.address import format_address, parse_address
from kitex_grpc.errors import BizStatusError, KitexError, to_status
from kitex_grpc.protocol.grpc_headers import GrpcHeaderError, encode_metadata, split_method_path
from kitex_grpc.rpcinfo import Metadata
from kitex_grpc.transport.base import CallDispatcher, MethodEntry
from kitex_grpc.transport.call_head import CallHead
from kitex_grpc.transport.grpcio.call_meta import GrpcioCallMeta
from kitex_grpc.transport.grpcio.client import grpc_h2_args
from kitex_grpc.transport.grpcio.status import to_grpc_code
from kitex_grpc.transport.identity import caller_names
from kitex_grpc.transport.settings import ServerSettings

_Context = Any  # grpc.aio.ServicerContext


def peer_address(peer: str) -> str:
    """grpcio's ``ipv4:1.2.3.4:5`` / ``ipv6:[::1]:5`` peer string as ``host:port``."""
    kind, _, rest = peer.partition(":")
    return rest if kind in ("ipv4", "ipv6") else peer


async def _abort(context: _Context, exc: BaseException, meta: GrpcioCallMeta, trailers: Metadata) -> None:
    """End the call with the status ``exc`` maps to (this raises, as grpc.aio's abort does);
    ``trailers`` are the handler's (grpc_meta.set_trailer), sent on failure too."""
    await meta.before_reply()
    if isinstance(exc, BizStatusError):
        trailers = [*exc.grpc_trailers(), *trailers]
        code, message = exc.grpc_status, exc.message
    else:
        code, message = to_status(exc)
    await _check_trailers(context, trailers)
    await context.abort(to_grpc_code(code), message, tuple(trailers))


def _trailers(head: CallHead) -> Metadata:
    """The trailers a handler set (``grpc_meta.set_trailer``); none if the chain never ran."""
    return [] if head.ri is None else head.ri.response_metadata


async def _check_trailers(context: _Context, trailers: Metadata) -> None:
    """End the call with INTERNAL (raising, as abort does) if ``trailers`` cannot be sent.

    grpcio 1.62 fails the batch of a call whose metadata it cannot encode and leaves the call open, so the
    caller waits for its deadline; the h2 server answers such trailers with the same INTERNAL status.
    """
    if trailers:
        try:
            encode_metadata(trailers)
        except GrpcHeaderError as exc:
            await context.abort(grpc.StatusCode.INTERNAL, f"invalid trailing metadata: {exc.detail}")


class _ServerStreamIO:
    """A grpc.aio servicer context seen as a :class:`~kitex_grpc.streaming.StreamIO`."""

    __slots__ = ("_context", "_meta")

    def __init__(self, context: _Context, meta: GrpcioCallMeta) -> None:
        self._context = context
        self._meta = meta

    async def send(self, message: Any) -> None:
        if self._meta.flush_due():
            await self._meta.flush()
        await self._context.write(message)

    def disable_next_message_compression(self) -> None:
        self._context.disable_next_message_compression()

    async def recv(self) -> Any:
        message = await self._context.read()
        if message is grpc.aio.EOF:
            raise EOFError
        return message

    async def close_send(self) -> None:  # the server ends its side by returning
        return None

    def cancel(self) -> None:
        return None


DISPATCH_CACHE_SIZE = 1024  # paths remembered; emptied when full


class _Dispatch(grpc.GenericRpcHandler):
    """Resolves a ``/package.Service/Method`` path to a cached grpcio method handler.

    Only paths that name a method are cached (a client sending distinct unknown paths must not grow
    the cache), and at most :data:`DISPATCH_CACHE_SIZE` of them: the package part is ignored, so
    endlessly many paths name one method.
    """

    def __init__(self, transport: GrpcioServerTransport) -> None:
        self._transport = transport
        self._cache: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        path: str = handler_call_details.method
        handler = self._cache.get(path)
        if handler is None:
            handler = self._build(path)
            if handler is not None:
                if len(self._cache) >= DISPATCH_CACHE_SIZE:
                    self._cache.clear()
                self._cache[path] = handler
        return handler

    def _build(self, path: str) -> grpc.RpcMethodHandler[Any, Any] | None:
        service_name, method_name = split_method_path(path)
        entry = self._transport.dispatcher.lookup(service_name, method_name)
        if entry is None:
            return None  # grpcio answers UNIMPLEMENTED
        method = entry.method
        if method.mode.is_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._transport.stream_behavior(entry),
                request_deserializer=method.deserialize_request,
                response_serializer=method.serialize_response,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._transport.unary_behavior(entry),
            request_deserializer=method.deserialize_request,
            response_serializer=method.serialize_response,
        )


class GrpcioServerTransport:
    """Serves registered services on a grpc.aio server."""

    def __init__(self, options: ServerSettings, dispatcher: CallDispatcher) -> None:
        self._options = options
        self.dispatcher = dispatcher
        self._server: grpc.aio.Server | None = None
        self._address = ""
        self.dispatch: _Dispatch | None = None

    @property
    def address(self) -> str:
        return self._address

    def _head(self, entry: MethodEntry, context: _Context) -> CallHead:
        metadata: Metadata = [(m.key, m.value) for m in context.invocation_metadata() or ()]
        # The clock is read before the time remaining, so the deadline is never later than grpcio's:
        # grpcio cancels the handler's task when its own deadline passes, and a cancellation at or
        # after ri.deadline counts as the call's timeout (observability.tracer._outcome).
        now = time.monotonic()
        remaining = context.time_remaining()
        deadline = None if remaining is None or remaining > 1e9 else now + remaining
        transient, persistent = metainfo.from_http2_headers(metadata)
        caller_service, caller_method = caller_names(metadata)
        return CallHead(
            entry,
            metadata,
            transient,
            persistent,
            deadline,
            peer_address(context.peer()),
            self._address,
            caller_service,
            caller_method,
        )

    def unary_behavior(self, entry: MethodEntry) -> Any:
        dispatcher = self.dispatcher

        async def behavior(request: Any, context: _Context) -> Any:
            head = self._head(entry, context)
            meta = GrpcioCallMeta(context)
            grpc_meta.bind(meta)
            try:
                reply = await dispatcher.serve_unary(head, request)
            except KitexError as exc:
                await _abort(context, exc, meta, _trailers(head))
                raise  # not reached: abort raises
            ri = head.ri
            assert ri is not None  # filled by serve_unary
            if meta.flush_due():
                await meta.flush()
            if ri.response_metadata:
                await _check_trailers(context, ri.response_metadata)
                context.set_trailing_metadata(tuple(ri.response_metadata))
            return reply

        return behavior

    def stream_behavior(self, entry: MethodEntry) -> Any:
        dispatcher = self.dispatcher

        async def behavior(request_iterator: Any, context: _Context) -> None:
            head = self._head(entry, context)
            meta = GrpcioCallMeta(context)
            grpc_meta.bind(meta)
            try:
                await dispatcher.serve_stream(head, _ServerStreamIO(context, meta))
            except KitexError as exc:
                await _abort(context, exc, meta, _trailers(head))
                raise  # not reached: abort raises
            ri = head.ri
            assert ri is not None  # filled by serve_stream
            if meta.flush_due():
                await meta.flush()
            if ri.response_metadata:
                await _check_trailers(context, ri.response_metadata)
                context.set_trailing_metadata(tuple(ri.response_metadata))

        return behavior

    async def start(self) -> None:
        opts = self._options
        if opts.listeners:
            raise ValueError(
                "with_listener: grpcio cannot serve a given socket; use GRPC_H2, or bind "
                "with_service_addr (workers share a GRPC port with SO_REUSEPORT)"
            )
        size = opts.max_message_size
        # Off unless the user's raw args set it (workers do): grpcio takes the first of equal keys.
        reuseport = [] if any(k == "grpc.so_reuseport" for k, _ in opts.grpcio_server_options) else [0]
        server = grpc.aio.server(
            interceptors=list(opts.grpcio_interceptors) or None,
            options=[
                ("grpc.max_send_message_length", size),
                ("grpc.max_receive_message_length", size),
                *(("grpc.so_reuseport", v) for v in reuseport),
                *grpc_h2_args(opts),
                *opts.grpcio_server_options,  # last: the user's raw server args win
            ],
        )
        self.dispatch = _Dispatch(self)
        server.add_generic_rpc_handlers([self.dispatch])
        host, port = parse_address("with_service_addr", opts.service_addr, allow_port_zero=True)
        bind = format_address(host or "[::]", port) if host else f"[::]:{port}"
        if opts.tls is None:
            bound = server.add_insecure_port(bind)
        else:
            tls = opts.tls
            assert tls.private_key is not None and tls.certificate_chain is not None
            creds = grpc.ssl_server_credentials(
                [(tls.private_key, tls.certificate_chain)], tls.root_certificates, tls.require_client_auth
            )
            bound = server.add_secure_port(bind, creds)
        if bound == 0:
            raise OSError(f"with_service_addr: cannot listen on {opts.service_addr!r}")
        await server.start()
        self._server = server
        self._address = format_address(host or "0.0.0.0", bound)

    async def stop(self, grace: float) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace)
