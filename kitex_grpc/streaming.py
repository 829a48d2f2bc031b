"""Streams: what a streaming call looks like to users, middlewares and transports.

A transport opens a :class:`StreamIO` (``send``/``recv``/``close_send``/``cancel``; ``recv`` raises
``EOFError`` once the peer has finished sending). The client and server wrap it so that every
message passes through the stream send/recv middlewares (Kitex ``WithStreamSendMiddleware`` /
``WithStreamRecvMiddleware``)::

    SendEndpoint = async (ri, message) -> None
    RecvEndpoint = async (ri) -> message

User-facing call objects: :class:`ServerStreamCall` (an async iterator of replies),
:class:`ClientStreamCall` (``send`` then ``close_and_recv``) and :class:`BidiStreamCall`
(``send``/``recv``/``close_send`` and ``async for``). ``recv`` raises ``EOFError`` at a clean end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

SendEndpoint = Callable[["RPCInfo", Any], Awaitable[None]]
RecvEndpoint = Callable[["RPCInfo"], Awaitable[Any]]
SendMiddleware = Callable[[SendEndpoint], SendEndpoint]
RecvMiddleware = Callable[[RecvEndpoint], RecvEndpoint]


class StreamIO(Protocol):
    """A transport's half of an open stream."""

    async def send(self, message: Any) -> None: ...

    async def recv(self) -> Any: ...

    async def close_send(self) -> None: ...

    def cancel(self) -> None: ...


class StreamArgs:
    """The request a client stream endpoint receives: the single request of a server stream, if any."""

    __slots__ = ("request",)

    def __init__(self, request: Any = None) -> None:
        self.request = request


def chain_send(middlewares: Sequence[SendMiddleware], endpoint: SendEndpoint) -> SendEndpoint:
    for mw in reversed(middlewares):
        endpoint = mw(endpoint)
    return endpoint


def chain_recv(middlewares: Sequence[RecvMiddleware], endpoint: RecvEndpoint) -> RecvEndpoint:
    for mw in reversed(middlewares):
        endpoint = mw(endpoint)
    return endpoint


class _RecvIterator(Generic[RespT]):
    """``async for`` over ``recv()``, which raises ``EOFError`` at a clean end."""

    __slots__ = ()

    async def recv(self) -> RespT:
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[RespT]:
        return self

    async def __anext__(self) -> RespT:
        try:
            return await self.recv()
        except EOFError:
            raise StopAsyncIteration from None


class Stream(_RecvIterator[RespT], Generic[ReqT, RespT]):
    """An open stream seen through the send/recv middlewares (client and server side alike)."""

    __slots__ = ("_cancelled", "_io", "_on_finish", "_recv", "_send", "finished", "ri")

    def __init__(
        self,
        ri: RPCInfo,
        io: StreamIO,
        send_mws: Sequence[SendMiddleware] = (),
        recv_mws: Sequence[RecvMiddleware] = (),
        on_finish: Callable[[RPCInfo, BaseException | None], None] | None = None,
    ) -> None:
        self.ri = ri
        self._io = io
        self.finished = False
        self._cancelled = False
        self._on_finish = on_finish

        async def send(ri: RPCInfo, message: Any) -> None:
            await io.send(message)
            ri.stats.send_messages += 1

        async def recv(ri: RPCInfo) -> Any:
            message = await io.recv()
            ri.stats.recv_messages += 1
            return message

        self._send: SendEndpoint = chain_send(send_mws, send) if send_mws else send
        self._recv: RecvEndpoint = chain_recv(recv_mws, recv) if recv_mws else recv

    async def send(self, message: ReqT) -> None:
        """Send one message; raises the call's error if the stream has already failed."""
        if self._cancelled:
            raise _cancelled_error()
        try:
            await self._send(self.ri, message)
        except BaseException as exc:
            self._finish(exc)
            raise

    async def recv(self) -> RespT:
        """Receive one message; ``EOFError`` once the peer has finished sending."""
        if self._cancelled:
            raise _cancelled_error()
        try:
            message: RespT = await self._recv(self.ri)
        except EOFError:
            self._finish(None)
            raise
        except BaseException as exc:
            self._finish(exc)
            raise
        return message

    async def close_send(self) -> None:
        """Tell the peer no more messages will be sent (half-close)."""
        await self._io.close_send()

    def disable_next_message_compression(self) -> None:
        """Send the next message uncompressed, on a call that compresses (grpcio's name).

        Raises ``NotImplementedError`` on a transport that cannot (grpcio's client: grpc.aio has no
        per-message flags for requests).
        """
        disable = getattr(self._io, "disable_next_message_compression", None)
        if disable is None:
            raise NotImplementedError("this transport cannot send a single message uncompressed")
        disable()

    def cancel(self) -> None:
        """Abort the stream (RST_STREAM CANCEL on HTTP/2); the peer sees it cancelled."""
        if not self.finished:
            self._cancelled = True
            self._io.cancel()
            self._finish(_cancelled_error())

    def _finish(self, error: BaseException | None) -> None:
        if self.finished:
            return
        self.finished = True
        self.ri.stats.finish(error)
        if self._on_finish is not None:
            self._on_finish(self.ri, error)

    async def __aenter__(self) -> Stream[ReqT, RespT]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cancel()


def _cancelled_error() -> BaseException:
    from kitex_grpc.errors import CanceledError

    return CanceledError("stream cancelled locally")


class BidiStreamCall(Stream[ReqT, RespT]):
    """A client's bidirectional stream: ``send``, ``recv``, ``close_send``, ``async for``."""

    __slots__ = ()


class ClientStreamCall(Stream[ReqT, RespT]):
    """A client-streaming call: ``send`` requests, then ``close_and_recv`` the single reply."""

    __slots__ = ()

    async def close_and_recv(self) -> RespT:
        await self.close_send()
        reply = await self.recv()
        try:
            await self.recv()  # the status after the reply; a second message breaks the contract
        except EOFError:
            return reply
        from kitex_grpc.errors import ProtocolError

        self.cancel()
        raise ProtocolError("server sent more than one reply on a client-streaming call")


class ServerStreamCall(_RecvIterator[RespT]):
    """A server-streaming call: iterate it for the replies. The stream opens on first use."""

    __slots__ = ("_open", "_stream")

    def __init__(self, open_stream: Callable[[], Awaitable[Stream[Any, RespT]]]) -> None:
        self._open = open_stream
        self._stream: Stream[Any, RespT] | None = None

    async def _ensure(self) -> Stream[Any, RespT]:
        if self._stream is None:
            self._stream = await self._open()
        return self._stream

    async def recv(self) -> RespT:
        """The next reply; ``EOFError`` after the last."""
        return await (await self._ensure()).recv()

    def cancel(self) -> None:
        if self._stream is not None:
            self._stream.cancel()

    @property
    def ri(self) -> RPCInfo | None:
        return None if self._stream is None else self._stream.ri

    async def __aenter__(self) -> ServerStreamCall[RespT]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stream is not None and not self._stream.finished:
            self._stream.cancel()
