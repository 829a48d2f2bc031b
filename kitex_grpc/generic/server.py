"""Generic servers: a service served without generated code, and a handler for everything unknown.

::

    from kitex_grpc import generic

    class Mock:
        async def call(self, method, request):           # JSON text in, JSON text out
            return '{"message": "mocked"}'

    svr = kitex_grpc.new_server(server.with_service_addr("127.0.0.1:8888"))
    generic.register_service(svr, generic.json_thrift("idl/echo.thrift"), Mock())

A handler has ``async call(method, request)`` for unary and one-way methods, and for protobuf
streams ``server_stream(method, request)`` (an async iterator), ``async client_stream(method,
requests)`` and ``bidi_stream(method, requests)`` (an async iterator), ``requests`` being an async
iterator of generic values. A Thrift handler may raise :class:`IDLExceptionError` to send a declared
exception (Kitex's generic server cannot).

:func:`register_unknown_handler` receives ``(service, method, request bytes)`` for any service or
method not registered (Kitex ``RegisterUnknownServiceOrMethodHandler``), on every transport.
"""

from __future__ import annotations

import collections
import types
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from kitex_grpc.generic.codecs import Generic, IDLExceptionError, ThriftGeneric
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.server import Server
from kitex_grpc.server.dispatch import RegisteredMethod
from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo, StreamingMode
from kitex_grpc.streaming import Stream

__all__ = ["UNKNOWN_SERVICE", "register_service", "register_unknown_handler"]

UNKNOWN_SERVICE: Final = "$UnknownService"
# Entries made for unknown (service, method) pairs are kept in a bounded LRU: a flood of random names
# costs a new entry each, never unbounded memory.
UNKNOWN_CACHE_SIZE: Final = 1024


def register_service(server: Server, generic: Generic, handler: Any) -> Server:
    """Serve ``generic``'s service with a generic ``handler`` (see the module docstring)."""
    if generic.binary:
        raise TypeError("a binary generic has no IDL: use register_unknown_handler for bytes in and out")
    functions = {
        name: _method_function(generic, mi, handler) for name, mi in generic.service_info.methods.items()
    }
    return server.register_service(generic.service_info, types.SimpleNamespace(**functions))


def _method_function(g: Generic, mi: MethodInfo, handler: Any) -> Callable[..., Any]:
    name = mi.name
    mode = mi.mode
    if mode in (StreamingMode.NONE, StreamingMode.UNARY):

        async def unary(*request: Any) -> Any:
            value = g.decode_request(mi, request[0] if request else None)
            try:
                out = await handler.call(name, value)
            except IDLExceptionError as exc:
                if isinstance(g, ThriftGeneric):
                    raise g.raise_declared(mi, exc) from None
                raise
            return None if mi.oneway else g.encode_reply(mi, out)

        return unary

    async def decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            yield g.decode_request(mi, request)

    if mode is StreamingMode.SERVER:

        async def server_stream(request: Any) -> AsyncIterator[Any]:
            async for out in handler.server_stream(name, g.decode_request(mi, request)):
                yield g.encode_reply(mi, out)

        return server_stream
    if mode is StreamingMode.CLIENT:

        async def client_stream(requests: AsyncIterator[Any]) -> Any:
            return g.encode_reply(mi, await handler.client_stream(name, decoded(requests)))

        return client_stream

    async def bidi_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for out in handler.bidi_stream(name, decoded(requests)):
            yield g.encode_reply(mi, out)

    return bidi_stream


def _identity(data: Any) -> Any:
    return data


def register_unknown_handler(
    server: Server, handler: Any, *, payload_codec: PayloadCodec = PayloadCodec.THRIFT
) -> Server:
    """Send every request for an unregistered service or method to ``handler``.

    ``handler.call(service, method, request: bytes) -> bytes`` serves ping-pong calls (TTHeader,
    Framed, Kitex Protobuf): Thrift requests are the ``<method>_args`` struct body and the reply must be
    the ``<method>_result`` struct body (a protobuf message's bytes for Kitex Protobuf).
    ``handler.stream(service, method, stream)`` serves every gRPC call, unary included (Kitex's
    ``StreamingHandler``): ``await stream.recv()`` gives request bytes (``EOFError`` at the end) and
    ``await stream.send(reply_bytes)`` answers. ``service`` is the name without its package
    (``$UnknownService`` when a TTHeader request names none). ``payload_codec`` is the payload the
    handler speaks over TTHeader (a request of the other kind gets a protocol error).
    """
    dispatcher = server.dispatcher
    empty = b"\x00" if payload_codec is PayloadCodec.THRIFT else b""

    def serialize(data: Any) -> bytes:
        return empty if data is None else bytes(data)

    entries: collections.OrderedDict[tuple[str, str], RegisteredMethod] = collections.OrderedDict()

    async def invoke(ri: RPCInfo, request: Any) -> Any:
        service, method = ri.service.service_name, ri.method.name
        if isinstance(request, Stream):
            await handler.stream(service, method, request)
            return None
        return await handler.call(service, method, request)

    def unknown(service_name: str, method_name: str) -> RegisteredMethod:
        key = (service_name or UNKNOWN_SERVICE, method_name)
        entry = entries.get(key)
        if entry is not None:
            entries.move_to_end(key)
            return entry
        # BIDIRECTIONAL: gRPC transports hand the handler the stream, unary calls included; the
        # TTHeader transport calls it with the request bytes whatever the mode says.
        mi = MethodInfo(
            method_name or "?",
            StreamingMode.BIDIRECTIONAL,
            None,
            None,
            serialize_request=serialize,
            deserialize_request=_identity,
            serialize_response=serialize,
            deserialize_response=_identity,
        )
        info = ServiceInfo(key[0].replace("/", "_"), [mi], payload_codec=payload_codec)
        entry = RegisteredMethod(info, mi, invoke)
        entries[key] = entry
        if len(entries) > UNKNOWN_CACHE_SIZE:
            entries.popitem(last=False)
        return entry

    dispatcher.unknown = unknown
    dispatcher.unknown_invoker = invoke
    return server
