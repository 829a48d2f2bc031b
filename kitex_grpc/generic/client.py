"""The generic client: calls without generated code, through the ordinary client chain.

::

    from kitex_grpc import client, generic
    g = generic.json_thrift("idl/echo.thrift")
    cli = generic.new_client(g, "echo", client.with_host_ports("127.0.0.1:8888"),
                             client.with_transport_protocol("ttheader"))
    reply = await cli.call("echo", '{"message": "hi"}')      # '{"message":"hi"}'

A request is converted before the chain runs, so a bad one raises
:class:`~kitex_grpc.generic.ConvertError` (naming the bad field) and nothing is sent. The chain is a
typed client's (retry, timeouts, discovery, circuit breakers, metainfo, tracing): its middlewares see
the typed values (args structs, protobuf messages, or bytes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

from kitex_grpc.callopt import CallOption
from kitex_grpc.client import Client, ClientOption
from kitex_grpc.client import new_client as _new_client
from kitex_grpc.generic.codecs import Generic, ThriftGeneric
from kitex_grpc.serviceinfo import MethodInfo, StreamingMode
from kitex_grpc.streaming import BidiStreamCall, ClientStreamCall, ServerStreamCall

__all__ = ["GenericClient", "GenericStream", "new_client"]


class GenericStream:
    """A client or bidi stream whose messages are generic values (JSON text, dicts or bytes)."""

    def __init__(self, generic: Generic, mi: MethodInfo, stream: ClientStreamCall[Any, Any] | Any) -> None:
        self._g = generic
        self._mi = mi
        self.stream = stream

    async def send(self, value: Any) -> None:
        await self.stream.send(self._g.encode_request(self._mi, value))

    async def recv(self) -> Any:
        """The next reply; ``EOFError`` at the end of the stream."""
        return self._g.decode_reply(self._mi, await self.stream.recv())

    async def close_send(self) -> None:
        await self.stream.close_send()

    async def close_and_recv(self) -> Any:
        """Client streams: end sending and return the single reply."""
        return self._g.decode_reply(self._mi, await self.stream.close_and_recv())

    def cancel(self) -> None:
        self.stream.cancel()

    @property
    def ri(self) -> Any:
        return self.stream.ri

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.recv()
            except EOFError:
                return


class GenericClient:
    """A client of one generic kind; make it with :func:`new_client`."""

    def __init__(self, generic: Generic, client: Client) -> None:
        self.generic = generic
        self.client = client

    def call(self, method: str, request: Any, *opts: CallOption) -> Awaitable[Any]:
        """A unary (or one-way) call: await it for the reply's generic value (``None`` for one-way
        and void).

        Thrift: a declared exception raises :class:`~kitex_grpc.generic.IDLExceptionError` with its value.
        An unknown method raises :class:`~kitex_grpc.generic.ConvertError` here, before anything is sent.
        """
        g = self.generic
        mi = g.method(method)
        if g.binary:  # bytes in, bytes out: the typed call itself, no frame of ours around it
            return self.client.call(method, request, *opts)
        return self._call(g, mi, request, opts)

    async def _call(self, g: Generic, mi: MethodInfo, request: Any, opts: tuple[CallOption, ...]) -> Any:
        typed = g.encode_request(mi, request)  # before anything is sent
        if isinstance(g, ThriftGeneric):
            try:
                reply = await self.client.call(mi.name, typed, *opts)
            except Exception as exc:
                declared = g.exception(mi, exc)
                if declared is None:
                    raise
                raise declared from None
        else:
            reply = await self.client.call(mi.name, typed, *opts)
        if mi.oneway:
            return None
        return g.decode_reply(mi, reply)

    def server_stream(self, method: str, request: Any, *opts: CallOption) -> AsyncIterator[Any]:
        """A server-streaming call: an async iterator of the replies' generic values."""
        g = self.generic
        mi = g.method(method, StreamingMode.SERVER)
        typed = g.encode_request(mi, request)
        call: ServerStreamCall[Any] = self.client.server_stream(method, typed, *opts)
        return _decoded(g, mi, call)

    async def client_stream(self, method: str, *opts: CallOption) -> GenericStream:
        """Open a client stream: ``send`` values, then ``close_and_recv``."""
        mi = self.generic.method(method, StreamingMode.CLIENT)
        return GenericStream(self.generic, mi, await self.client.client_stream(method, *opts))

    async def bidi_stream(self, method: str, *opts: CallOption) -> GenericStream:
        """Open a bidirectional stream: ``send``/``recv``/``close_send``, or ``async for``."""
        mi = self.generic.method(method, StreamingMode.BIDIRECTIONAL)
        stream: BidiStreamCall[Any, Any] = await self.client.bidi_stream(method, *opts)
        return GenericStream(self.generic, mi, stream)

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> GenericClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.close()


async def _decoded(g: Generic, mi: MethodInfo, call: ServerStreamCall[Any]) -> AsyncIterator[Any]:
    async for reply in call:
        yield g.decode_reply(mi, reply)


def new_client(generic: Generic, dest_service: str, *opts: ClientOption) -> GenericClient:
    """A generic client of ``generic`` calling ``dest_service``, configured by ``client.with_*``."""
    return GenericClient(generic, _new_client(generic.service_info, dest_service, *opts))
