"""One client connection: an asyncio protocol with at most one request in flight (Kitex long conn).

The connection writes a request and resolves the waiting future with the next decoded
:class:`~kitex_grpc.transport.ttheader.wire.Message`. A reply that nobody waits for, a decode
error or the peer closing fails the waiter and closes the connection: its byte stream can no longer
be trusted, so the pool never hands it out again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from kitex_grpc.errors import ProtocolError, RemoteOrNetworkError
from kitex_grpc.transport.receive_buffer import ReceiveBufferProtocol
from kitex_grpc.transport.ttheader.wire import Framing, Message, MessageDecoder

__all__ = ["ClientConnection", "ReplyStream"]

logger = logging.getLogger("kitex_grpc.transport.ttheader")


class ReplyStream(ReceiveBufferProtocol):
    """What both kinds of client connection share: one socket to ``address``, the decoder of its
    replies, whether it still takes calls, and the error its calls get once it is gone."""

    __slots__ = ("_closed", "_decoder", "_error", "_loop", "_transport", "address", "retired")

    def __init__(self, address: str, framing: Framing, max_frame_size: int) -> None:
        self.address = address
        self._decoder = MessageDecoder(framing, max_frame_size)
        self._transport: asyncio.Transport | None = None
        # made by create_connection's protocol factory, so on the loop the socket will belong to; kept,
        # as asyncio.get_running_loop() costs a getpid() system call on Python 3.11
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._error: RemoteOrNetworkError | None = None
        # no new calls: close once the call(s) in flight end (discovery removed the address, crrst)
        self.retired = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast("asyncio.Transport", transport)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._error is None:
            error = RemoteOrNetworkError(f"connection to {self.address} closed by peer")
            if exc is not None:
                error.with_cause(exc)
            self._error = error
        self._fail_calls(self._error)

    @property
    def alive(self) -> bool:
        transport = self._transport
        return not self._closed and transport is not None and not transport.is_closing()

    def _check(self) -> asyncio.Transport:
        """The transport, or the error a call on a closed connection gets."""
        if not self.alive:
            raise self._error or RemoteOrNetworkError(f"connection to {self.address} is closed")
        assert self._transport is not None
        return self._transport

    def _replies(self, data: memoryview) -> list[Message] | None:
        """The replies this read completes; None when the stream broke (the calls have failed)."""
        try:
            return self._decoder.receive_data(data)
        except ProtocolError as exc:
            error = RemoteOrNetworkError(f"bad reply from {self.address}: {exc.detail}")
            error.__cause__ = exc
            self._fail(error)
            return None

    def _fail_calls(self, error: RemoteOrNetworkError) -> None:
        raise NotImplementedError

    def _fail(self, error: RemoteOrNetworkError) -> None:
        raise NotImplementedError


class ClientConnection(ReplyStream):
    """A TCP connection to one server address, one call at a time (Kitex's long connection)."""

    __slots__ = ("_waiter",)

    def __init__(self, address: str, framing: Framing, max_frame_size: int) -> None:
        super().__init__(address, framing, max_frame_size)
        self._waiter: asyncio.Future[Message] | None = None

    def data_received(self, data: memoryview) -> None:
        messages = self._replies(data)
        if messages is None:
            return
        for message in messages:
            waiter = self._waiter
            if waiter is None or waiter.done():
                self._fail(RemoteOrNetworkError(f"unexpected message {message.method!r} from {self.address}"))
                return
            self._waiter = None
            waiter.set_result(message)

    def _fail_calls(self, error: RemoteOrNetworkError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    # -- use ----------------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write a request that gets no reply (one-way)."""
        self._check().write(data)

    def start(self, data: bytes) -> asyncio.Future[Message]:
        """Write a request; the future gets the next message from the server."""
        transport = self._check()
        waiter: asyncio.Future[Message] = self._loop.create_future()
        self._waiter = waiter
        transport.write(data)
        return waiter

    def _fail(self, error: RemoteOrNetworkError) -> None:
        self._error = error
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        else:
            logger.warning("ttheader client: %s; closing the connection", error)
        self.close()

    def close(self) -> None:
        """Close (flushing anything already written, so a one-way request still goes out)."""
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()
