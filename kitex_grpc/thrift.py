"""Thrift services with IDL loaded at run time (thriftpy2), served and called like any other.

::

    from kitex_grpc import thrift, client, server, TransportProtocol

    echo_thrift = thrift.load("idl/echo.thrift")
    info = thrift.service_info(echo_thrift.Echo)

    class Echo:
        async def echo(self, req):
            return echo_thrift.EchoReply(message=req.message)

    svr = kitex_grpc.new_server(server.with_service_addr("127.0.0.1:8888"),
                                server.with_transport_protocol(TransportProtocol.TTHEADER))
    svr.register_service(info, Echo())

    cli = thrift.new_client(echo_thrift.Echo, "echo", client.with_host_ports("127.0.0.1:8888"),
                            client.with_transport_protocol(TransportProtocol.TTHEADER))
    reply = await cli.echo(echo_thrift.EchoRequest(message="hi"))

Handlers take the IDL arguments positionally and return the result (``None`` for ``void`` and
``oneway``); raising a declared IDL exception sends it to the caller, where it is raised again as the
same class. Middlewares see the ``<method>_args`` / ``<method>_result`` structs, as in Kitex.

Streaming methods (the ``streaming.mode`` annotation, :mod:`kitex_grpc.codec.thrift_streaming`) have the
shape of protobuf streams, with the argument and return structs as messages::

    Reply Chat(1: Request req) (streaming.mode="bidirectional")   # handler: async generator of replies
                                                                  #   over an async iterator of requests
    Reply Upload(1: Request req) (streaming.mode="client")        # handler: async fn(requests) -> reply
    Reply Watch(1: Request req) (streaming.mode="server")         # handler: async generator fn(req)

    stream = await cli.Chat()               # BidiStreamCall: send, recv, close_send, async for
    upload = await cli.Upload()             # ClientStreamCall: send, then close_and_recv
    async for reply in cli.Watch(req): ...  # ServerStreamCall

Stream middlewares see each struct. A handler error ends the stream with that error; an IDL exception
raised in a stream is such an error too (Kitex has no typed exceptions on streams).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kitex_grpc.callopt import CallOption
from kitex_grpc.client import Client, ClientOption
from kitex_grpc.client import new_client as _new_client
from kitex_grpc.codec.thrift import MissingResultError
from kitex_grpc.codec.thrift import load as _load
from kitex_grpc.codec.thrift import service_info as _service_info
from kitex_grpc.serviceinfo import ServiceInfo, StreamingMode

__all__ = ["MissingResultError", "ThriftClient", "load", "new_client", "service_info"]


def load(path: str | Path, module_name: str | None = None) -> Any:
    """Load a ``.thrift`` file; returns thriftpy2's module (structs, exceptions, services)."""
    return _load(path, module_name)


def service_info(service: Any, *, service_name: str | None = None) -> ServiceInfo:
    """The service info of a loaded service class, e.g. ``service_info(module.Echo)``."""
    return _service_info(service, service_name=service_name)


class ThriftClient:
    """A client whose attributes are the service's methods: ``await cli.echo(req, *callopts)``.

    Several IDL arguments are passed positionally: ``await cli.add(1, 2)``. Streaming methods return
    what :class:`~kitex_grpc.client.Client`'s stream calls return: ``cli.watch(req, *callopts)`` a
    ``ServerStreamCall``; ``await cli.upload(*callopts)`` a ``ClientStreamCall``; ``await
    cli.chat(*callopts)`` a ``BidiStreamCall``.
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name not in self.client.service_info.methods:
            raise AttributeError(name)
        mode = self.client.service_info.methods[name].mode
        if mode.is_streaming:
            return self._stream_method(name, mode)
        call = self.client.call

        def method(*args: Any) -> Awaitable[Any]:
            if len(args) == 1 and not isinstance(args[0], CallOption):
                return call(name, args[0])
            opts = tuple(a for a in args if isinstance(a, CallOption))
            values = tuple(a for a in args if not isinstance(a, CallOption))
            request = values[0] if len(values) == 1 else values
            return call(name, request, *opts)

        method.__name__ = name
        self.__dict__[name] = method
        return method

    def _stream_method(self, name: str, mode: StreamingMode) -> Callable[..., Any]:
        cli = self.client
        stream: Callable[..., Any]
        if mode is StreamingMode.SERVER:

            def stream(request: Any, *opts: CallOption) -> Any:
                return cli.server_stream(name, request, *opts)

        elif mode is StreamingMode.CLIENT:

            def stream(*opts: CallOption) -> Awaitable[Any]:
                return cli.client_stream(name, *opts)

        else:

            def stream(*opts: CallOption) -> Awaitable[Any]:
                return cli.bidi_stream(name, *opts)

        stream.__name__ = name
        self.__dict__[name] = stream
        return stream

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> ThriftClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.close()


def new_client(service: Any, dest_service: str, *opts: ClientOption) -> ThriftClient:
    """A :class:`ThriftClient` of a thriftpy2 service class (or a Thrift :class:`ServiceInfo`)."""
    info = service if isinstance(service, ServiceInfo) else service_info(service)
    return ThriftClient(_new_client(info, dest_service, *opts))
