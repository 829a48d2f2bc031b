"""One call on a server HTTP/2 connection: :class:`ServerCall`, its state and wake-ups, and
:class:`ServerStreamIO`, the same call as the server's chain sees a stream.

The connection (:mod:`~kitex_grpc.transport.h2.server_conn`) feeds a call the request messages and
the half-close from the core's events and wakes its waiters; the call's handler task reads and
writes through the connection (flow-control acknowledgements, response headers, backpressure).
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from kitex_grpc import grpc_meta
from kitex_grpc.errors import CanceledError, StatusError
from kitex_grpc.protocol.h2_call import StreamClosedError
from kitex_grpc.protocol.h2_events import CallStarted
from kitex_grpc.status import StatusCode
from kitex_grpc.transport.h2.wakeup import Wakeup

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import Metadata
    from kitex_grpc.serviceinfo import MethodInfo
    from kitex_grpc.transport.h2.server_conn import ServerConnection

__all__ = ["ServerCall", "ServerStreamIO"]


class ServerCall(grpc_meta.ServerCallMeta):
    """The server's view of one stream: request messages, half-close, and wake-ups.

    ``messages`` holds ``(body, flow-controlled bytes, arrived compressed)`` per request message.
    """

    __slots__ = (
        "conn",
        "encoding",
        "ended",
        "eof",
        "header_md",
        "headers_sent",
        "last_compressed",
        "messages",
        "recv_wakeup",
        "send_wakeup",
        "skip_compression",
        "started",
        "stream_id",
        "task",
    )

    def __init__(
        self,
        stream_id: int,
        encoding: str | None,
        conn: ServerConnection | None = None,
        started: CallStarted | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.encoding = encoding
        self.conn = conn
        self.started = started
        self.header_md: Metadata | None = None  # response headers a handler set (grpc_meta)
        self.skip_compression = False  # send the next message uncompressed
        self.last_compressed = False
        self.messages: collections.deque[tuple[bytes, int, bool]] = collections.deque()
        self.eof = False  # the client half-closed
        self.ended = False  # reset, rejected, or the connection went away: nothing more to send
        self.headers_sent = False
        self.recv_wakeup = Wakeup()
        self.send_wakeup = Wakeup()
        self.task: asyncio.Task[None] | None = None

    def wake_recv(self) -> None:
        self.recv_wakeup.wake()

    def wake_send(self) -> None:
        self.send_wakeup.wake()

    def end(self) -> None:
        """The stream is gone: cancel the handler and release its waiters."""
        if self.ended:
            return
        self.ended = True
        self.wake_recv()
        self.wake_send()
        if self.task is not None:
            self.task.cancel()

    def next_compressed(self) -> bool:
        """Whether the next reply message goes compressed (and consume a per-message opt-out)."""
        if self.skip_compression:
            self.skip_compression = False
            return False
        return self.encoding is not None

    # -- grpc_meta.ServerCallMeta -------------------------------------------------------------------

    def response_headers_sent(self) -> bool:
        return self.headers_sent or self.ended

    def add_response_headers(self, metadata: Metadata) -> None:
        if self.header_md is None:
            self.header_md = []
        self.header_md.extend(metadata)

    async def flush_response_headers(self) -> None:
        if self.ended or self.conn is None:
            raise CanceledError("stream closed by the client")
        self.conn.ensure_headers(self, explicit=True)
        self.conn.flush()

    def request_encoding(self) -> str | None:
        return None if self.started is None else self.started.encoding

    def accepted_encodings(self) -> tuple[str, ...]:
        return () if self.started is None else self.started.accept_encoding

    def set_send_encoding(self, encoding: str | None) -> None:
        self.encoding = encoding

    def disable_next_message_compression(self) -> None:
        self.skip_compression = True

    def last_message_compressed(self) -> bool | None:
        return self.last_compressed


class ServerStreamIO:
    """A server call seen by the chain as a :class:`~kitex_grpc.streaming.StreamIO`."""

    __slots__ = ("_call", "_conn", "_high_water", "_method")

    def __init__(self, conn: ServerConnection, call: ServerCall, method: MethodInfo) -> None:
        self._conn = conn
        self._call = call
        self._method = method
        self._high_water = conn._tuning.send_high_water

    async def send(self, message: Any) -> None:
        call = self._call
        conn = self._conn
        if call.ended:
            raise CanceledError("stream closed by the client")
        body = self._method.serialize_response(message)
        conn.check_size(body)
        core = conn.core
        sid = call.stream_id
        conn.ensure_headers(call)
        try:
            core.send_message(sid, body, compressed=call.next_compressed())
        except StreamClosedError:
            raise CanceledError("stream closed by the client") from None
        await conn.flush_and_hold(call, self._high_water)

    async def recv(self) -> Any:
        call = self._call
        messages = call.messages
        while not messages:
            if call.eof:
                raise EOFError
            if call.ended:
                raise CanceledError("stream closed by the client")
            await self._conn.wait_recv(call)
        body, held, call.last_compressed = messages.popleft()
        self._conn.acknowledge(call, held)
        try:
            return self._method.deserialize_request(body)
        except Exception as exc:
            raise StatusError(StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}") from exc

    async def close_send(self) -> None:  # the server ends its side by returning
        return None

    def disable_next_message_compression(self) -> None:
        self._call.skip_compression = True

    def cancel(self) -> None:
        call = self._call
        if not call.ended:
            call.ended = True
            self._conn.core.reset(call.stream_id, ErrorCodes.CANCEL)
            self._conn.flush()
