"""Server transport: one TCP port for TTHeader, TTHeaderFramed, Framed, Buffered and Kitex Protobuf.

Each connection is classified once from its first 8 bytes (:mod:`kitex_grpc.protocol.detection`,
Kitex ``pkg/remote/trans/detection``); HTTP/2 connections are handed to the h2 gRPC transport when it
is installed (:func:`TTHeaderServerTransport._adopt_http2`). Requests on one connection are served
one after another, each in its own task, and answered in the framing and payload codec they came in.

Error handling follows Kitex ``pkg/remote/trans/default_server_handler.go``:

* bytes no protocol matches, a bad TTHeader, an oversize frame: logged, connection closed (Kitex
  cannot address a reply either);
* a message that decodes but cannot be served (unknown service or method, a body that does not
  decode, a wrong message type): an EXCEPTION reply tagged ``crrst``, then the connection closes;
* a handler error: an EXCEPTION reply (type 6 "biz error: ..."), the connection stays;
* a BizStatusError: a REPLY with an empty result and ``biz-status`` / ``biz-message`` / ``biz-extra``.

Timeouts (``with_read_write_timeout``, ``with_max_conn_idle_time``; Kitex's 5 s and 10 min): a request
whose first byte is older than the read timeout and which is still incomplete ends its connection
(logged, nothing answered: the stalled peer cannot be); a connection with nothing read and nothing in
progress for the idle time is closed. One timer for the whole server sweeps the connections.

Replies over TTHeader carry int key 22 MsgType (``"2"`` / ``"3"``), the handler's backward values as
raw str keys, and ``crrst`` once a graceful stop has begun (``pkg/transmeta/ttheader.go``).

Limits (KITEX-WIRE.md §4.2): with :meth:`TTHeaderServerTransport.limit_connections` every accepted
connection is counted before a byte is read (Kitex ``OnActive``); one over the limit is closed with
no reply, logged, and counted as a connection-limit rejection (the limiter's ``rejected`` and
:func:`~kitex_grpc.observability.metrics.record_rejection`). A connection handed to HTTP/2 stays
counted until it closes. The QPS limit applies per request, in the server's ``limit`` middleware.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import importlib
import logging
import socket
import time
from collections.abc import MutableSet
from typing import Any, Final, Protocol, cast

from kitex_grpc import metainfo
from kitex_grpc.address import format_address, parse_address
from kitex_grpc.codec.envelope import Envelope
from kitex_grpc.errors import BizStatusError, ProtocolError, TApplicationType
from kitex_grpc.options.server import ServerOptions
from kitex_grpc.protocol.detection import DetectedProtocol, detect
from kitex_grpc.protocol.frames import FramesBeforeError
from kitex_grpc.protocol.thrift_message import MessageType
from kitex_grpc.protocol.ttheader import INFO_CACHE_MAX_BYTES, HeaderInfo, IntKey, rpc_timeout_seconds
from kitex_grpc.suspension import FINISHED, NOT_STARTED, EagerStepper, Resumption
from kitex_grpc.transport.base import CallDispatcher
from kitex_grpc.transport.epoll_io import (
    EpollListener,
    EpollTransport,
    can_serve_with_epoll,
    listening_sockets,
)
from kitex_grpc.transport.eventlog import EventLog
from kitex_grpc.transport.listeners import ServerGroup, adopt
from kitex_grpc.transport.receive_buffer import ReceiveBufferProtocol, thread_buffer
from kitex_grpc.transport.ttheader.errors import exception_fields
from kitex_grpc.transport.ttheader.routing import RouteError, route
from kitex_grpc.transport.ttheader.wire import (
    Framing,
    Message,
    MessageDecoder,
    MessageEncoder,
    encode,
    frame_limit,
    header_info,
)

__all__ = ["TTHeaderServerTransport"]

logger = logging.getLogger("kitex_grpc.transport.ttheader")

# asyncio's bookkeeping of the running task (public in effect: asyncio's eager tasks use it in 3.12+).
# Without them (another Python), requests are served by the worker task only, never eagerly.
_enter_task: Final[Any] = getattr(asyncio.tasks, "_enter_task", None)
_leave_task: Final[Any] = getattr(asyncio.tasks, "_leave_task", None)
_CAN_STEP_EAGERLY: Final = _enter_task is not None and _leave_task is not None
# The same bookkeeping's loop -> running task map: asyncio.current_task(loop) is a Python call
# around its get() on Python 3.11.
_current_tasks: Final[Any] = getattr(asyncio.tasks, "_current_tasks", None)
_current_task: Final[Any] = asyncio.current_task if _current_tasks is None else _current_tasks.get

_FRAMINGS = {
    DetectedProtocol.TTHEADER: Framing.TTHEADER,
    DetectedProtocol.FRAMED: Framing.FRAMED,
    DetectedProtocol.KITEX_PROTOBUF: Framing.FRAMED,
    DetectedProtocol.BUFFERED: Framing.BUFFERED,
}
_CALL: Final = int(MessageType.CALL)
_ONEWAY: Final = int(MessageType.ONEWAY)
_REPLY: Final = int(MessageType.REPLY)
_EXCEPTION: Final = int(MessageType.EXCEPTION)
_REPLY_INT: Final = {int(IntKey.MSG_TYPE): str(_REPLY)}
_EXCEPTION_INT: Final = {int(IntKey.MSG_TYPE): str(_EXCEPTION)}
_REPLY_INFO = header_info({}, _REPLY_INT)
H2_SERVER_MODULE = "kitex_grpc.transport.h2.server"  # the h2 gRPC transport HTTP/2 is handed to
_CONN_RESET: Final = "crrst"  # rpcinfo.ConnResetTag (pkg/rpcinfo/basicinfo.go)
_BIZ_STATUS, _BIZ_MESSAGE, _BIZ_EXTRA = "biz-status", "biz-message", "biz-extra"
_RPC_TIMEOUT, _FROM_SERVICE, _FROM_METHOD = (
    int(IntKey.RPC_TIMEOUT),
    int(IntKey.FROM_SERVICE),
    int(IntKey.FROM_METHOD),
)


# Serve connections from one epoll set where the loop allows it (kitex_grpc.transport.epoll_io);
# tests turn it off to run the loop.create_server path on asyncio's loop too.
SERVE_WITH_EPOLL = True


class _Listener(Protocol):
    """What stop() needs of the listener: an asyncio.Server or an EpollListener."""

    def close(self) -> None: ...


class ConnectionLimiter(Protocol):
    """What :meth:`TTHeaderServerTransport.limit_connections` takes (governance's ConnectionLimiter)."""

    def acquire(self, conn: object) -> bool: ...

    def release(self, conn: object) -> None: ...


SHAPE_CACHE_SIZE = 4096  # (header info, method, envelope) combinations remembered per server
_BACKLOG: Final = 1024  # the listening sockets' accept queue
DRAIN_QUIET: Final = 1.0  # seconds: while draining, a connection used more recently stays open


class _Shape:
    """What every request with the same header-info area, method name and envelope shares.

    Kitex clients send identical header bytes on every call of a method (the seq id lives outside
    the info area), and the decoder hands out one :class:`HeaderInfo` per distinct area, so routing,
    the metainfo split, the deadline key, the caller's names and the reply encoder are worked out
    once per shape (:meth:`TTHeaderServerTransport.shape`) instead of once per request.
    """

    __slots__ = (
        "entry",
        "from_method",
        "from_service",
        "has_int_info",
        "metadata",
        "method",
        "persistent",
        "reply",
        "timeout",
        "transient",
    )

    def __init__(self, dispatcher: CallDispatcher, message: Message) -> None:
        str_info, int_info = message.str_info, message.int_info
        self.entry = route(dispatcher, message, str_info)  # RouteError: not a shape, nothing cached
        self.method = self.entry.method
        self.metadata: tuple[tuple[str, str], ...] = tuple(str_info.items())
        if str_info:
            self.transient, self.persistent = metainfo.from_ttheader_strinfo(str_info)
        else:
            self.transient, self.persistent = {}, {}
        # The RPC timeout key in seconds; None when absent or not a timeout Kitex would apply.
        self.timeout: float | None = rpc_timeout_seconds(int_info.get(_RPC_TIMEOUT))
        self.has_int_info = bool(int_info)
        self.from_service = int_info.get(_FROM_SERVICE, "")
        self.from_method = int_info.get(_FROM_METHOD, "")
        self.reply = MessageEncoder(message.framing, message.envelope, message.method, _REPLY, _REPLY_INFO)


_IDLE_WORKERS = 4  # finished workers a connection keeps for its next suspended requests


class _Worker:
    """A task that resumes a request which suspended during its eager step (see _serve_eagerly)."""

    __slots__ = ("pending", "task", "wake")

    task: asyncio.Task[None]

    def __init__(self) -> None:
        self.pending: Resumption | None = None
        self.wake: asyncio.Future[None] | None = None

    def assign(self, pending: Resumption) -> None:
        self.pending = pending
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)


class _ServerConnection(ReceiveBufferProtocol):
    """One accepted connection: detection, decoding, and serving its requests in order."""

    def __init__(self, server: TTHeaderServerTransport) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._head: bytearray | None = bytearray()
        self._decoder: MessageDecoder | None = None
        self._queue: collections.deque[Message] = collections.deque()
        self._workers: set[_Worker] = set()  # created as requests suspend (see _serve_eagerly)
        self._idle_workers: list[_Worker] = []
        self._active = 0  # requests started and not ended (eagerly or by a worker)
        self._in_order = True  # serve one request at a time (not over TTHeader: see _serve_eagerly)
        self._out: list[bytes] | None = None  # replies of the current eager pass, written together
        self._base_context = contextvars.copy_context()
        self._stepper = EagerStepper()  # steps each request inside data_received (_serve_eagerly)
        self._closing = False  # no more requests: close once the current one is answered
        self._bad_input: str | None = None  # bad bytes after good requests: close once those are answered
        self._paused = False
        self._limiter: ConnectionLimiter | None = None  # set while this connection is counted
        self.peer = ""
        # the loop is kept: asyncio.get_running_loop() costs a getpid() system call on Python 3.11
        self._loop = asyncio.get_running_loop()
        # The idle clock is time.monotonic (asyncio's loop.time is a Python call around it), read in
        # _sweep too; the sweep's timer itself runs on the loop's clock.
        self.last_active = time.monotonic()  # last bytes read or request answered
        self.partial_since: float | None = None  # when the unfinished request's bytes began arriving
        # the base class's view, taken here: protocols are made on the loop's thread, which reads into it
        self._receive_view = thread_buffer()

    # -- asyncio.BufferedProtocol: the base class's two methods again, compiled (they run on every read) --

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._receive_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._receive_view[:nbytes])

    # -- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        self.peer = format_address(peer[0], peer[1]) if isinstance(peer, tuple) else str(peer)
        limiter = self._server.conn_limiter
        if limiter is not None:
            if not limiter.acquire(self):
                self._closing = True
                self._server.reject_connection(self.peer, limiter)
                transport.close()  # nothing was read or written: the client sees a plain close
                return
            self._limiter = limiter
        self._transport = transport
        self._server.connections.add(self)

    def data_received(self, data: memoryview) -> None:
        if self._closing or self._bad_input is not None:
            return
        now = self.last_active = time.monotonic()
        decoder = self._decoder
        if decoder is None:
            decoder = self._detect(data)
            if decoder is None:
                if self.partial_since is None:
                    self.partial_since = now
                return
            head, self._head = self._head, None
            assert head is not None
            data = memoryview(head)
        try:
            messages = decoder.receive_data(data)
        except FramesBeforeError as exc:  # the requests before the bad bytes are answered first
            messages = exc.frames
            self._bad_input = f"undecodable {decoder.framing.value} bytes: {exc.detail}"
        except ProtocolError as bad:  # not `exc`: compiled, a name keeps the type of its first binding
            self._abandon(f"undecodable {decoder.framing.value} bytes: {bad.detail}")
            return
        # The read timeout runs from the first byte of an unfinished request until it completes.
        if messages or self.partial_since is None:
            self.partial_since = now if decoder.buffered else None
        if not messages:
            return
        self._queue.extend(messages)
        if not (self._in_order and self._active):
            self._serve_eagerly()
        if self._bad_input is not None and not self._active and not self._closing:
            self._abandon(self._bad_input)

    def eof_received(self) -> bool | None:
        decoder = self._decoder
        pending = decoder.buffered if decoder is not None else len(self._head or b"")
        if pending:
            self._server.events.log(
                "truncated",
                logging.WARNING,
                "ttheader server: connection from %s ended inside a message (%d bytes truncated)",
                self.peer,
                pending,
            )
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._queue.clear()
        for worker in self._idle_workers:
            worker.task.cancel()  # idle: nothing left to serve (busy ones end after their request)
        self._idle_workers.clear()
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release(self)
        self._server.forget(self)

    def check_timeouts(self, now: float, idle_time: float, read_timeout: float) -> None:
        """Close this connection if a request stalled half-read past ``read_timeout``, or if it has
        been idle (nothing read, nothing in progress) for ``idle_time`` (Kitex WithReadWriteTimeout,
        WithMaxConnIdleTime)."""
        if self._closing or self._transport is None:
            return
        if self.partial_since is not None and now - self.partial_since > read_timeout:
            pending = self._decoder.buffered if self._decoder is not None else len(self._head or b"")
            self._abandon(f"read timeout: {pending} bytes of a request waited {read_timeout:g}s for the rest")
        elif not self._active and not self._queue and now - self.last_active > idle_time:
            logger.info("ttheader server: closing the connection from %s: idle for %gs", self.peer, idle_time)
            self._close_after_write()

    def pause_writing(self) -> None:
        # A slow reader: stop reading its requests until its replies drain (others are unaffected).
        if self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and self._paused:
            self._paused = False
            self._transport.resume_reading()

    # -- detection --------------------------------------------------------------------------------------

    def _detect(self, data: memoryview) -> MessageDecoder | None:
        head = self._head
        assert head is not None
        head += data
        try:
            detected = detect(head)
        except ProtocolError as exc:
            self._abandon(exc.detail)
            return None
        if detected is None:
            return None
        if detected is DetectedProtocol.HTTP2 or detected is DetectedProtocol.TTHEADER_STREAMING:
            transport, self._transport = self._transport, None
            self._head = None
            self._server.forget(self)
            assert transport is not None
            limiter, self._limiter = self._limiter, None
            server = self._server
            adopt = server.adopt_http2 if detected is DetectedProtocol.HTTP2 else server.adopt_ttstream
            adopt(transport, bytes(head), None if limiter is None else (limiter, self))
            self._closing = True
            return None
        framing = _FRAMINGS.get(detected)
        if framing is None:
            self._abandon(f"unsupported protocol {detected.value}")
            return None
        self._decoder = MessageDecoder(framing, self._server.max_frame)
        self._in_order = not framing.has_header
        return self._decoder

    # -- serving ----------------------------------------------------------------------------------------

    # Each request runs in its own copy of the connection's context (metainfo, rpcinfo, deadline live
    # in contextvars), first eagerly inside data_received: the usual handler never suspends, and then
    # neither a task nor a loop iteration is spent on it. A request that suspends is handed to the
    # worker task that was current during its eager step (asyncio's own eager tasks do the same), so
    # asyncio.timeout(), TaskGroup and current_task() in a handler see the task that will resume the
    # request, and its cancellation reaches the request. The worker steps it (still in its own
    # context) until it ends.
    #
    # Order: over Framed and Buffered (clients without seq-id matching) requests are served one after
    # another; those that arrive behind a suspended one wait, and its worker serves them in order.
    # Over TTHeader every request starts at once and is answered when it ends (Kitex's mux server,
    # pkg/remote/trans/netpollmux): a client that pipelines there matches replies by seq id, and a
    # Kitex long-connection client never pipelines. Each suspended request then has a worker of its
    # own; finished workers wait for the next one (a few stay per connection).
    #
    # Replies finished in one eager pass are written together, in one write.

    def _serve_eagerly(self) -> None:
        queue = self._queue
        loop = self._loop
        # eager only from a plain callback (as asyncio calls data_received), never inside a task
        eager = _CAN_STEP_EAGERLY and _current_task(loop) is None
        in_order = self._in_order
        idle = self._idle_workers  # the last one is entered for each eager step, taken if it suspends
        stepper = self._stepper
        out: list[bytes] | None = [] if len(queue) > 1 else None  # one request: write it directly
        self._out = out
        try:
            while queue and not self._closing:
                if in_order and self._active:
                    break  # behind a suspended request: its worker serves the rest in order
                message = queue.popleft()
                context = self._base_context.copy()
                coro = self._serve(message)
                worker = idle[-1] if idle else self._new_worker(loop)
                if not eager:
                    idle.pop()
                    self._active += 1
                    worker.assign(Resumption(coro, NOT_STARTED, context))
                    continue
                task = worker.task
                _enter_task(loop, task)
                try:
                    yielded = stepper.first_step(coro, context)
                except BaseException as exc:  # _serve catches what a request can raise; this is a bug
                    self._log_failure(exc)
                    yielded = FINISHED
                finally:
                    _leave_task(loop, task)
                if yielded is FINISHED:
                    continue
                idle.pop()
                self._active += 1
                worker.assign(Resumption(stepper.take_suspended(), yielded, context))
        finally:
            if out is not None:
                self._flush()
                self._out = None
        # Idle again: data_received has just set the idle clock, so only a graceful stop is checked.
        if not self._active and self._server.draining and self._transport is not None:
            self._transport.close()

    def _new_worker(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        """A new idle worker (the last of ``_idle_workers``)."""
        worker = _Worker()
        worker.task = loop.create_task(self._work(worker))
        self._workers.add(worker)
        self._idle_workers.append(worker)
        return worker

    def _became_idle(self) -> None:
        self.last_active = time.monotonic()
        if self._bad_input is not None:
            if not self._closing:
                self._abandon(self._bad_input)
            return
        if self._server.draining and self._transport is not None:
            self._transport.close()

    async def _work(self, worker: _Worker) -> None:
        """A worker: resumes the suspended request handed to it (in order, then the queue behind it)."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        try:
            while True:
                pending: Resumption | None = worker.pending
                worker.pending = None
                if pending is None:
                    if self._closing:
                        return
                    wake = worker.wake = loop.create_future()
                    try:
                        await wake
                    except asyncio.CancelledError as exc:
                        pending, worker.pending = worker.pending, None
                        if pending is None:
                            raise  # cancelled while idle: the connection is gone
                        pending.throw = exc  # cancelled after a hand-over: the request gets it
                    else:
                        continue
                try:
                    await pending
                except asyncio.CancelledError:
                    self._active -= 1
                    raise
                except BaseException as failure:  # not `exc`: see _serve
                    self._log_failure(failure)
                if self._in_order and queue and not self._closing:
                    worker.pending = Resumption(
                        self._serve(queue.popleft()), NOT_STARTED, self._base_context.copy()
                    )
                    continue
                self._active -= 1
                if not self._active:
                    self._became_idle()
                if self._closing or len(self._idle_workers) >= _IDLE_WORKERS:
                    return
                self._idle_workers.append(worker)
        finally:
            self._workers.discard(worker)

    def _log_failure(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            return
        logger.error("ttheader server: request on %s failed", self.peer, exc_info=exc)

    async def _serve(self, message: Message) -> None:
        server = self._server
        if message.msg_type not in (_CALL, _ONEWAY):
            self._reject(
                message,
                f"invalid message type {message.msg_type} for a request",
                TApplicationType.INVALID_MESSAGE_TYPE,
            )
            return
        try:
            shape = server.shape(message)
        except RouteError as exc:
            self._reject(message, exc.detail, exc.type_id)
            return
        except Exception as bad:  # a header nothing can be served from: answered, never dropped
            # (not `exc`: compiled, a name keeps the type of its first binding in the function)
            self._reject(message, f"bad request header: {bad}", TApplicationType.PROTOCOL_ERROR)
            return
        method = shape.method
        try:
            request = method.deserialize_request(message.body)
        except Exception as exc:
            self._reject(message, f"decode {method.name} request: {exc}", TApplicationType.PROTOCOL_ERROR)
            return
        oneway = message.msg_type == _ONEWAY or method.oneway
        timeout = shape.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        dispatcher = server.dispatcher
        backward = dispatcher.begin_call(shape.transient, shape.persistent)  # read, never kept
        ri = dispatcher.new_rpcinfo(shape.entry, self.peer, server.address, list(shape.metadata), deadline)
        ri.seq_id = message.seq_id
        if shape.has_int_info:
            ri.caller.service_name = shape.from_service
            ri.caller.method = shape.from_method
        biz: BizStatusError | None = None
        try:
            result = await dispatcher.handle_unary(shape.entry, ri, request)
        except BizStatusError as exc:
            biz = exc
            result = method.response_type() if method.response_type is not None else None
        except Exception as exc:
            if oneway:
                return
            text, type_id = exception_fields(exc)
            self._write_exception(message, text, type_id, backward.sent)
            return
        if oneway:
            return
        try:
            body = method.serialize_response(result)
        except Exception as exc:
            logger.error("ttheader server: cannot encode the %s reply: %s", method.name, exc)
            self._write_exception(
                message, f"encode {method.name} reply: {exc}", TApplicationType.PROTOCOL_ERROR, {}
            )
            return
        if message.info is not None and (biz is not None or backward.sent or server.draining):
            reply_info: dict[str, str] = {}
            if biz is not None:
                reply_info[_BIZ_STATUS] = str(biz.code)
                reply_info[_BIZ_MESSAGE] = biz.message
                if biz.extra:
                    reply_info[_BIZ_EXTRA] = biz.encode_extra()
            reply_info.update(backward.sent)
            if server.draining:
                reply_info[_CONN_RESET] = "1"
            data = encode(
                message.framing,
                message.envelope,
                message.method,
                _REPLY,
                message.seq_id,
                body,
                reply_info,
                _REPLY_INT,
            )
        else:  # the usual reply: its header (only int key 22 = "2") and message head encoded once
            data = shape.reply.encode(message.seq_id, body)
        self._write(data)

    # -- writing ----------------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Send a reply, or add it to the eager pass's batch."""
        out = self._out
        if out is not None:
            out.append(data)
            return
        self._send(data)

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _write_exception(
        self, message: Message, text: str, type_id: int, str_info: dict[str, str], reset: bool = False
    ) -> None:
        envelope = message.envelope
        body = envelope.encode_exception(text, type_id)
        name = message.method or "unknown"
        if message.info is not None:
            info = dict(str_info)
            if reset or self._server.draining:
                info[_CONN_RESET] = "1"
            data = encode(
                message.framing, envelope, name, _EXCEPTION, message.seq_id, body, info, _EXCEPTION_INT
            )
        else:
            data = encode(message.framing, envelope, name, _EXCEPTION, message.seq_id, body)
        self._write(data)

    def _reject(self, message: Message, text: str, type_id: int) -> None:
        """Answer a request that cannot be served with an exception tagged ``crrst``, then close."""
        self._server.events.log(
            "rejected",
            logging.WARNING,
            "ttheader server: %s from %s (seq %d): %s; closing the connection",
            message.method or "<no method>",
            self.peer,
            message.seq_id,
            text,
        )
        if message.msg_type != _ONEWAY:
            self._write_exception(message, text, type_id, {}, reset=True)
        self._close_after_write()

    def _abandon(self, why: str) -> None:
        self._server.events.log(
            "bad_input",
            logging.WARNING,
            "ttheader server: closing the connection from %s: %s",
            self.peer,
            why,
        )
        self._close_after_write()

    def _flush(self) -> None:
        """Write the replies batched so far in this eager pass (batching stays on)."""
        out = self._out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._send(data)

    def _close_after_write(self) -> None:
        self._flush()
        self._closing = True
        self._queue.clear()
        if self._transport is not None:
            self._transport.close()

    # -- shutdown ---------------------------------------------------------------------------------------

    def drain(self, now: float, quiet: float) -> None:
        """Graceful stop: close now if idle for ``quiet`` seconds, else after the request being served
        (or the next one, answered with ``crrst``) is answered."""
        if not self._active and self._transport is not None and now - self.last_active >= quiet:
            self._transport.close()

    def abort(self) -> None:
        for worker in list(self._workers):
            worker.task.cancel()
        if self._transport is not None:
            self._transport.abort()


class _Counted(asyncio.Protocol):
    """Wraps an adopted HTTP/2 protocol so the connection limiter is released when it closes."""

    __slots__ = ("_inner", "_key", "_limiter")

    def __init__(self, inner: asyncio.Protocol, limiter: ConnectionLimiter, key: object) -> None:
        self._inner = inner
        self._limiter: ConnectionLimiter | None = limiter
        self._key = key

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release(self._key)
        self._inner.connection_lost(exc)


class _Primed(asyncio.Protocol):
    """Gives a new transport to ``inner`` together with the bytes read before it existed."""

    def __init__(self, inner: asyncio.Protocol, head: bytes) -> None:
        self._inner = inner
        self._head = head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Before the transport's first read: the head comes first, and every later callback goes to
        # inner directly.
        transport.set_protocol(self._inner)
        self._inner.connection_made(transport)
        self._inner.data_received(self._head)


class TTHeaderServerTransport:
    """Serves every registered service on one TCP listener: an :class:`EpollListener` on asyncio's
    own loop on Linux, ``loop.create_server`` on any other loop."""

    def __init__(self, options: ServerOptions, dispatcher: CallDispatcher) -> None:
        self._options = options
        self.dispatcher = dispatcher
        self.max_frame = frame_limit(options.max_message_size)
        # A MutableSet, not a set: compiled, a set's methods would be called directly, and a watcher
        # that replaces this attribute with a set subclass (as the tests do) would miss the changes.
        self.connections: MutableSet[_ServerConnection] = set()
        self.draining = False
        self._server: _Listener | None = None
        # Per-connection events a peer can repeat at will (bad frames, truncated messages, connections
        # over the limit): the first of a kind is logged at once, then one line per second with a count.
        self.events = EventLog(logger)
        self._adoptions: set[asyncio.Task[None]] = set()  # HTTP/2 sockets being handed to asyncio
        self._address = ""
        self._idle = asyncio.Event()
        self._h2: Any = None
        self._ttstream: Any = None  # kitex_grpc.transport.ttstream.server.TTStreamServer, on first use
        self._shapes: dict[tuple[HeaderInfo | None, str, Envelope], _Shape] = {}
        self.conn_limiter: ConnectionLimiter | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def address(self) -> str:
        return self._address

    def limit_connections(self, limiter: ConnectionLimiter) -> None:
        """Count connections at accept with ``limiter``; close the ones over its limit unanswered.

        ``limiter`` (:class:`kitex_grpc.governance.limiter.ConnectionLimiter`) has
        ``acquire(conn) -> bool`` and ``release(conn)``; each connection acquires once when accepted and
        releases when it closes.
        """
        self.conn_limiter = limiter

    def reject_connection(self, peer: str, limiter: ConnectionLimiter) -> None:
        """A connection over the limit: log it and count the rejection (Kitex ``ErrConnOverLimit``)."""
        self.events.log(
            "over_limit",
            logging.WARNING,
            "ttheader server: connection from %s closed: max connections %s reached (ConnOverLimit)",
            peer,
            getattr(limiter, "limit", "?"),
        )  # the limiter itself reports the rejection (stats, reporter, metrics)

    async def start(self) -> None:
        if self._options.tls is not None:
            raise ValueError("with_tls: the TTHeader transports do not support TLS")
        host, port = parse_address("with_service_addr", self._options.service_addr, allow_port_zero=True)
        loop = asyncio.get_running_loop()
        given = self._options.listeners  # with_listener: serve the sockets given
        if given and not (SERVE_WITH_EPOLL and can_serve_with_epoll(loop)):
            self._server = await ServerGroup.serve(lambda: _ServerConnection(self), given)
            bound = given[0].getsockname()
        elif SERVE_WITH_EPOLL and can_serve_with_epoll(loop):
            sockets = adopt(given) if given else await listening_sockets(host, port, _BACKLOG)
            listener = EpollListener(loop, sockets, lambda: _ServerConnection(self))
            listener.start()
            self._server = listener
            bound = sockets[0].getsockname()
        else:
            server = await loop.create_server(
                lambda: _ServerConnection(self), host or None, port, reuse_address=True, backlog=_BACKLOG
            )
            self._server = server
            # a tuple on asyncio's loop, a list on uvloop's (compiled code would check for a tuple)
            bound = cast("Any", server).sockets[0].getsockname()
        self._address = format_address(host or (bound[0] if given else "0.0.0.0"), bound[1])
        self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def _sweep_interval(self) -> float:
        # One timer for all connections: a stalled read is closed within a quarter of its timeout
        # after the limit (at most 1 s after), instead of a timer per request.
        opts = self._options
        return min(1.0, max(0.01, min(opts.max_conn_idle_time, opts.read_write_timeout) / 4))

    def _sweep(self) -> None:
        self._sweeper = None
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        now = time.monotonic()  # the connections' idle clock
        opts = self._options
        for conn in list(self.connections):
            conn.check_timeouts(now, opts.max_conn_idle_time, opts.read_write_timeout)
        self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def shape(self, message: Message) -> _Shape:
        """The :class:`_Shape` of a request (cached), or :class:`RouteError` when no method serves it."""
        info = message.info
        key = (info, message.method, message.envelope)
        shape = self._shapes.get(key)
        if shape is None:
            shape = _Shape(self.dispatcher, message)
            if info is None or (len(info.raw) <= INFO_CACHE_MAX_BYTES and info.raw):
                if len(self._shapes) >= SHAPE_CACHE_SIZE:
                    self._shapes.clear()
                self._shapes[key] = shape
        return shape

    def forget(self, conn: _ServerConnection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    def adopt_http2(
        self,
        transport: asyncio.Transport,
        head: bytes,
        counted: tuple[ConnectionLimiter, object] | None = None,
    ) -> None:
        """Hand an HTTP/2 connection (gRPC) to the h2 transport, with the bytes already read.

        ``counted``: the connection limiter and the key this connection holds in it; the h2 protocol is
        then wrapped so the key is released when the connection closes. Until
        ``kitex_grpc.transport.h2`` is installed, the connection is closed with a log line.
        """
        if self._h2 is None:
            try:
                h2_server = importlib.import_module(H2_SERVER_MODULE)
            except ImportError:
                logger.warning(
                    "ttheader server: HTTP/2 (gRPC) connection from %s closed: the h2 transport is not "
                    "installed in this build",
                    transport.get_extra_info("peername"),
                )
                transport.close()
                if counted is not None:
                    counted[0].release(counted[1])
                return
            self._h2 = h2_server.H2ServerTransport(self._options, self.dispatcher)
        self._hand_over(transport, self._h2.connection_protocol(), head, counted)

    def adopt_ttstream(
        self,
        transport: asyncio.Transport,
        head: bytes,
        counted: tuple[ConnectionLimiter, object] | None = None,
    ) -> None:
        """Hand a TTHeader Streaming connection to :mod:`kitex_grpc.transport.ttstream.server`."""
        if self._ttstream is None:
            from kitex_grpc.transport.ttstream.server import TTStreamServer

            self._ttstream = TTStreamServer(self._options, self.dispatcher, self.events, self.max_frame)
        self._hand_over(transport, self._ttstream.protocol(self._address), head, counted)

    def _hand_over(
        self,
        transport: asyncio.Transport,
        proto: asyncio.Protocol,
        head: bytes,
        counted: tuple[ConnectionLimiter, object] | None,
    ) -> None:
        if counted is not None:
            proto = _Counted(proto, *counted)
        if isinstance(transport, EpollTransport):  # asyncio's own transport takes the socket over
            task = asyncio.get_running_loop().create_task(self._adopt_socket(transport.detach(), proto, head))
            self._adoptions.add(task)
            task.add_done_callback(self._adoptions.discard)
            return
        transport.set_protocol(proto)
        proto.connection_made(transport)
        proto.data_received(head)

    async def _adopt_socket(self, sock: socket.socket, proto: asyncio.Protocol, head: bytes) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: _Primed(proto, head), sock)
        except Exception as exc:
            logger.warning("ttheader server: cannot hand a connection over: %s", exc)
            sock.close()
            proto.connection_lost(exc)  # a _Counted one releases its limiter key

    async def stop(self, grace: float) -> None:
        """Stop listening; answer in-flight requests (with ``crrst``) within ``grace``; then close.

        Adopted HTTP/2 connections are drained by the h2 transport (GOAWAY) at the same time.
        """
        server, self._server = self._server, None
        if server is None:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.draining = True
        server.close()
        if self._adoptions:  # HTTP/2 sockets still being handed over: the h2 transport drains them too
            await asyncio.gather(*self._adoptions, return_exceptions=True)
        drains = [self._drain(grace)]
        if self._h2 is not None:
            drains.append(self._h2.drain_adopted(grace))
        if self._ttstream is not None:
            drains.append(self._ttstream.drain(grace))
        await asyncio.gather(*drains)

    async def _drain(self, grace: float) -> None:
        # A connection used within DRAIN_QUIET stays open while draining: a client may be writing its
        # next request right now, and closing would lose it ("closed by peer"). That request is
        # answered with crrst, which retires the connection at the client (Kitex ConnResetTag), and
        # the connection closes after the reply. One quiet for DRAIN_QUIET is closed.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.connections:
            self._idle.clear()
            now = time.monotonic()  # the connections' activity clock
            for conn in list(self.connections):
                conn.drain(now, DRAIN_QUIET)
            left = deadline - loop.time()
            if not self.connections or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, DRAIN_QUIET / 4)):
                    await self._idle.wait()
        if self.connections:
            logger.warning(
                "ttheader server: %d connection(s) still busy after the %.1fs exit wait; closing",
                len(self.connections),
                grace,
            )
            for conn in list(self.connections):
                conn.abort()
