"""TTHeader Streaming server: connections the TTHeader port hands over (KITEX-WIRE-2.md §11).

The TTHeader server detects a connection whose first frame has the streaming flag and gives it to
:class:`TTStreamServer`. Each Header frame opens a stream served in its own task by the dispatcher
(``serve_stream``). When the handler
returns, the Header (if none went out yet) and the Trailer are written (§11.7, §11.8):

* a clean end: an empty Trailer carrying the handler's trailer metadata;
* a :class:`~kitex_grpc.errors.BizStatusError`: ``biz-status`` / ``biz-message`` / ``biz-extra``;
* any other error: a Thrift EXCEPTION message ``(method, seqid = stream id, TApplicationException)``.

Beyond Kitex (each documented in the README):

* an unknown service or method is answered with a Trailer carrying a TApplicationException
  (UnknownService 20 / UnknownMethod 1); Kitex only logs it and the caller waits for its deadline;
* int key 28 (StreamTimeoutError, milliseconds), which a Python client sends when it has a deadline and
  Kitex's server ignores, bounds the handler: past it the stream ends with an exception;
* at most ``max_streams`` streams are open per connection; a Header over that is answered with a
  Trailer exception (type 6) and not served, so a flood of opened streams costs one small write each.

Frames for a stream id not open here (an unknown id, or Data before the Header) are ignored, as Kitex
does; a frame without the streaming flag or of an unknown type closes the connection. Both are logged
through the server's :class:`~kitex_grpc.transport.eventlog.EventLog` (one line per kind and second).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from kitex_grpc import metainfo
from kitex_grpc.errors import (
    BIZ_EXTRA_KEY,
    BIZ_MESSAGE_KEY,
    BIZ_STATUS_KEY,
    BizStatusError,
    CanceledError,
    ProtocolError,
    RPCTimeoutError,
    TApplicationType,
)
from kitex_grpc.protocol.ttheader import IntKey
from kitex_grpc.protocol.ttstream import (
    CANCEL_PATH_KEY,
    IDL_SERVICE_KEY,
    FrameType,
    StreamFrame,
    encode_exception_payload,
    encode_stream_frame,
    encode_with_info,
    frame_info,
)
from kitex_grpc.protocol.ttstream_state import Event, StreamState
from kitex_grpc.transport.call_head import CallHead
from kitex_grpc.transport.ttheader.errors import exception_fields
from kitex_grpc.transport.ttstream.conn import StreamConnection
from kitex_grpc.transport.ttstream.queue import RecvQueue

if TYPE_CHECKING:
    from kitex_grpc.serviceinfo import MethodInfo
    from kitex_grpc.transport.base import CallDispatcher, MethodEntry
    from kitex_grpc.transport.eventlog import EventLog
    from kitex_grpc.transport.settings import ServerSettings
    from kitex_grpc.transport.ttstream.config import TTStreamConfig

__all__ = ["TTStreamServer"]

logger = logging.getLogger("kitex_grpc.transport.ttstream")

_STREAM_TIMEOUT: Final = int(IntKey.STREAM_TIMEOUT)  # 28, milliseconds
CODE_STREAM_TIMEOUT: Final = 12015  # ttstream's "stream timeout" (pkg/remote/trans/ttstream/exception.go)


def stream_timeout_seconds(value: str | None) -> float | None:
    """Int key 28 in seconds; ``None`` when absent, not a positive decimal or absurd."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 12:
        return None
    ms = int(value)
    return ms / 1000 if ms > 0 else None


class TTStreamServer:
    """The ttstream connections of one server, and how they are drained at stop."""

    def __init__(
        self, options: ServerSettings, dispatcher: CallDispatcher, events: EventLog, max_frame: int
    ) -> None:
        from kitex_grpc.transport.ttstream.config import DEFAULT_TTSTREAM

        self.config: TTStreamConfig = getattr(options, "ttstream", DEFAULT_TTSTREAM)
        self.dispatcher = dispatcher
        self.events = events
        self.max_frame = max_frame
        self.address = ""
        self.connections: set[ServerConnection] = set()
        self.draining = False
        self._idle = asyncio.Event()

    def protocol(self, address: str) -> ServerConnection:
        """A protocol for one connection just detected as ttstream."""
        self.address = address
        return ServerConnection(self)

    def forget(self, conn: ServerConnection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    async def drain(self, grace: float) -> None:
        """Let open streams end within ``grace`` seconds (no new ones), then close every connection."""
        self.draining = True
        if not self.connections:
            return
        self._idle.clear()
        for conn in list(self.connections):
            conn.drain()
        if self.connections:
            try:
                async with asyncio.timeout(grace):
                    await self._idle.wait()
            except TimeoutError:
                logger.warning(
                    "ttstream server: %d connection(s) still busy after %.1fs; closing",
                    len(self.connections),
                    grace,
                )
                for conn in list(self.connections):
                    conn.abort()


class ServerConnection(StreamConnection):
    """One ttstream connection at the server: a stream per Header frame."""

    def __init__(self, server: TTStreamServer) -> None:
        super().__init__(server.max_frame)
        self.server = server
        self.streams: dict[int, ServerStream] = {}
        self.eof = False  # the client shut its sending side (eof_received)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.connections.add(self)

    def frame_received(self, frame: StreamFrame) -> None:
        kind = frame.type
        if kind is FrameType.DATA:  # the common case, first
            stream = self.streams.get(frame.sid)
            if stream is not None:
                stream.on_data(frame.payload)
                return
        elif kind is FrameType.HEADER:
            self._open(frame)
            return
        stream = self.streams.get(frame.sid)
        if stream is None:
            # Kitex ignores frames for an unknown stream id (frame_handler / server read loop); so does
            # this server, Data before a Header included: the stream does not exist yet.
            self.server.events.log(
                "unknown_stream",
                logging.INFO,
                "ttstream server: %s frame for unknown stream %d from %s ignored",
                frame.type.name,
                frame.sid,
                self.peer,
            )
            return
        stream.on_frame(frame)

    def eof_received(self) -> bool | None:
        """The client shut its sending side: the open streams get no more requests, but may still
        answer (the client can read); the connection closes when the last one is done."""
        self.eof = True
        for stream in list(self.streams.values()):
            stream.on_eof()
        if not self.streams:
            return None  # close now
        return True

    def protocol_failed(self, error: ProtocolError) -> None:
        self.server.events.log(
            "bad_frame", logging.WARNING, "ttstream server: connection from %s closed: %s", self.peer, error
        )

    def lost(self, error: BaseException | None) -> None:
        for stream in list(self.streams.values()):
            stream.connection_lost()
        self.server.forget(self)

    def drain(self) -> None:
        if not self.streams:
            self.close()

    def stream_done(self, stream: ServerStream) -> None:
        if self.streams.get(stream.sid) is stream:
            del self.streams[stream.sid]
        if (self.server.draining or self.eof) and not self.streams:
            self.close()

    # -- opening a stream ----------------------------------------------------------------------------

    def _refuse(self, frame: StreamFrame, message: str, type_id: int, kind: str) -> None:
        self.server.events.log(kind, logging.WARNING, "ttstream server: %s (from %s)", message, self.peer)
        # A Thrift message name cannot be empty: a Header without a method still gets its answer.
        payload = encode_exception_payload(frame.method or "unknown", frame.sid, message, type_id)
        self.write(encode_stream_frame(FrameType.HEADER, frame.sid, frame.method))
        self.write(encode_stream_frame(FrameType.TRAILER, frame.sid, frame.method, payload))

    def _open(self, frame: StreamFrame) -> None:
        server = self.server
        sid = frame.sid
        if sid in self.streams:
            server.events.log(
                "duplicate_stream",
                logging.WARNING,
                "ttstream server: Header for stream %d already open, from %s: ignored",
                sid,
                self.peer,
            )
            return
        if server.draining:
            self._refuse(frame, "server is shutting down", int(TApplicationType.INTERNAL_ERROR), "draining")
            return
        if len(self.streams) >= server.config.max_streams:
            self._refuse(
                frame,
                f"too many open streams on one connection (max {server.config.max_streams})",
                int(TApplicationType.INTERNAL_ERROR),
                "stream_limit",
            )
            return
        entry = self._lookup(frame.str_info.get(IDL_SERVICE_KEY, ""), frame.method)
        if isinstance(entry, tuple):
            self._refuse(frame, entry[0], entry[1], "unknown_method")
            return
        if not entry.method.mode.is_streaming:
            # A Kitex client sends unary methods (streaming.mode="unary" too) over TTHeader, never here.
            self._refuse(
                frame,
                f"method {frame.method} is not a streaming method",
                int(TApplicationType.UNKNOWN_METHOD),
                "unknown_method",
            )
            return
        stream = ServerStream(self, sid, frame.method, entry.method, server.config.recv_queue_size)
        self.streams[sid] = stream
        task = stream.task = self._loop.create_task(self._serve(stream, entry, frame))
        # Not in _serve's finally alone: a task cancelled before its first step (an Rst in the same
        # read as the Header) never runs its coroutine, and the stream would stay open for good.
        task.add_done_callback(lambda _task: self.stream_done(stream))

    def _lookup(self, service: str, method: str) -> MethodEntry | tuple[str, int]:
        """The method entry, or the refusal's text and type (Kitex ttstream ``server_handler.go``)."""
        dispatcher = self.server.dispatcher
        found = dispatcher.search_service(service, method)
        if found is None:
            return f"unknown service {service}", int(TApplicationType.UNKNOWN_SERVICE)
        entry = dispatcher.lookup(found.service_name, method)
        if entry is None:
            return f"unknown method {method}", int(TApplicationType.UNKNOWN_METHOD)
        return entry

    async def _serve(self, stream: ServerStream, entry: MethodEntry, frame: StreamFrame) -> None:
        dispatcher = self.server.dispatcher
        error: BaseException | None = None
        head: CallHead | None = None
        try:
            timeout = stream_timeout_seconds(frame.int_info.get(_STREAM_TIMEOUT))
            deadline = None if timeout is None else time.monotonic() + timeout
            transient, persistent = metainfo.from_ttheader_strinfo(frame.str_info)
            head = CallHead(
                entry,
                list(frame.str_info.items()),
                transient,
                persistent,
                deadline,
                self.peer,
                self.server.address,
            )
            bound = asyncio.timeout(timeout)
            try:
                async with bound:
                    await dispatcher.serve_stream(head, stream)
            except TimeoutError:
                # Ours only if this bound expired (the loop's clock may differ from time.monotonic's).
                if not bound.expired():
                    raise
                raise StreamTimeoutError from None
        except asyncio.CancelledError:
            if not stream.reset and not self.closed:
                # Cancelled from elsewhere (the handler's own stream.cancel(), the loop ending): the
                # client still gets an end, as an exception.
                error = CanceledError("stream handler cancelled")
                raise
        except Exception as exc:
            error = exc
        finally:
            stream.task = None
            # The Trailer goes out before the stream is forgotten: a draining connection closes as
            # its last stream is done.
            if not stream.reset and not self.closed:
                ri = None if head is None else head.ri
                stream.finish(error, None if ri is None else ri.response_metadata)
            self.stream_done(stream)


class StreamTimeoutError(RPCTimeoutError):
    """The deadline of int key 28 passed: the Trailer's exception has type 12015 (Kitex's code for a
    stream timeout), which a Python client raises as RPCTimeoutError; a Kitex client shows 12001."""

    def __init__(self) -> None:
        super().__init__("[ttstream error, code=12015] stream timeout: the caller's deadline passed")


class ServerStream:
    """The server's half of one stream (:class:`~kitex_grpc.streaming.StreamIO`)."""

    __slots__ = ("_conn", "_data_info", "_method", "_queue", "_state", "method_name", "reset", "sid", "task")

    def __init__(
        self, conn: ServerConnection, sid: int, method_name: str, method: MethodInfo, limit: int
    ) -> None:
        self._conn = conn
        self.sid = sid
        self.method_name = method_name
        self._data_info = frame_info(FrameType.DATA, method_name)
        self._method = method
        self._queue = RecvQueue(conn, limit)
        self._state = StreamState(client=False)
        self.reset = False
        self.task: asyncio.Task[None] | None = None

    def on_data(self, payload: bytes) -> None:
        if self._state.receive(FrameType.DATA) is Event.MESSAGE:
            self._queue.put(payload)

    def on_frame(self, frame: StreamFrame) -> None:
        event = self._state.receive(frame.type)
        if event is Event.MESSAGE:
            self._queue.put(frame.payload)
        elif event is Event.HALF_CLOSE:
            self._queue.end()
        elif event is Event.RESET:
            # The client cancelled (Kitex: the handler's ctx ends with code 12010); nothing is written
            # back, as a Kitex server's late Header/Trailer would be ignored by the client anyway.
            self.reset = True
            path = frame.str_info.get(CANCEL_PATH_KEY, "")
            self._queue.abort(CanceledError(f"stream canceled by upstream (path {path!r})", remote=True))
            if self.task is not None:
                self.task.cancel()

    def on_eof(self) -> None:
        """The connection's read side ended: requests end here as at a half-close (Kitex ends the
        stream with 12013 when its connection is gone; the replies may still be read here)."""
        if not self._state.recv_closed:
            self._state.recv_closed = True
            self._queue.end(CanceledError("stream canceled by connection closed", remote=True))

    def connection_lost(self) -> None:
        self.reset = True
        self._queue.abort(CanceledError("stream canceled by connection closed", remote=True))
        if self.task is not None:
            self.task.cancel()

    # -- StreamIO -------------------------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        if self.reset:
            raise CanceledError("stream canceled by upstream", remote=True)
        payload = self._method.serialize_response(message)
        conn = self._conn
        if self._state.before_data():
            conn.write(encode_stream_frame(FrameType.HEADER, self.sid, self.method_name))
        if conn.write_paused:
            await conn.writable()
        conn.write(encode_with_info(self.sid, self._data_info, payload))

    async def recv(self) -> Any:
        payload = await self._queue.get()
        try:
            return self._method.deserialize_request(payload)
        except Exception as exc:
            raise ProtocolError(f"ttstream: cannot decode a {self.method_name} request: {exc}") from exc

    async def close_send(self) -> None:
        """The server's stream ends when its handler returns; nothing to do before that."""

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def finish(self, error: BaseException | None, trailer: Any) -> None:
        """Write the Header (if still due) and the Trailer for the handler's outcome."""
        state = self._state
        if state.send_closed:
            return
        conn = self._conn
        strs: dict[str, str] = {}
        for key, value in trailer or ():
            if isinstance(value, str):
                strs[key] = value
        payload = b""
        if isinstance(error, BizStatusError):
            strs[BIZ_STATUS_KEY] = str(error.code)
            strs[BIZ_MESSAGE_KEY] = error.message
            if error.extra:
                strs[BIZ_EXTRA_KEY] = error.encode_extra()
        elif isinstance(error, StreamTimeoutError):
            payload = encode_exception_payload(self.method_name, self.sid, error.detail, CODE_STREAM_TIMEOUT)
        elif error is not None:
            message, type_id = exception_fields(error)
            payload = encode_exception_payload(self.method_name, self.sid, message, type_id)
        if state.before_trailer():
            conn.write(encode_stream_frame(FrameType.HEADER, self.sid, self.method_name))
        conn.write(encode_stream_frame(FrameType.TRAILER, self.sid, self.method_name, payload, strs))
