"""What a request on the TTHeader port means: which method serves it, the call, and its reply.

Sans-IO apart from the call itself: a request comes in as a decoded :class:`Message`, and what it
produces leaves through its connection (:class:`~kitex_grpc.transport.ttheader.server_conn.ServerConnection`:
``write``, ``close_after_write`` and ``peer``). The connection is named by its class, not by a
protocol type: compiled, calls on a class of the same build are direct C calls, and through a
protocol type they were generic attribute calls (+1,150 instructions per request, measured with
``bench/path_ttheader.py`` under callgrind).

Error handling follows Kitex ``pkg/remote/trans/default_server_handler.go``:

* a message that decodes but cannot be served (unknown service or method, a body that does not
  decode, a wrong message type): an EXCEPTION reply tagged ``crrst``, then the connection closes;
* a handler error: an EXCEPTION reply (type 6 "biz error: ..."), the connection stays;
* a BizStatusError: a REPLY with an empty result and ``biz-status`` / ``biz-message`` / ``biz-extra``.

Replies over TTHeader carry int key 22 MsgType (``"2"`` / ``"3"``), the handler's backward values as
raw str keys, and ``crrst`` once a graceful stop has begun (``pkg/transmeta/ttheader.go``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from kitex_grpc import metainfo
from kitex_grpc.codec.envelope import Envelope
from kitex_grpc.errors import BizStatusError, TApplicationType
from kitex_grpc.header_keys import BIZ_EXTRA_KEY, BIZ_MESSAGE_KEY, BIZ_STATUS_KEY, CONN_RESET_KEY
from kitex_grpc.protocol.thrift_message import MessageType
from kitex_grpc.protocol.ttheader import INFO_CACHE_MAX_BYTES, HeaderInfo, IntKey, rpc_timeout_seconds
from kitex_grpc.transport.base import CallDispatcher
from kitex_grpc.transport.call_head import CallHead
from kitex_grpc.transport.eventlog import EventLog
from kitex_grpc.transport.ttheader.errors import exception_fields
from kitex_grpc.transport.ttheader.routing import RouteError, route
from kitex_grpc.transport.ttheader.wire import Message, MessageEncoder, encode, header_info

if TYPE_CHECKING:
    from kitex_grpc.transport.ttheader.server_conn import ServerConnection

__all__ = ["SHAPE_CACHE_SIZE", "RequestServing", "Shape"]

logger = logging.getLogger("kitex_grpc.transport.ttheader")

_CALL: Final = int(MessageType.CALL)
_ONEWAY: Final = int(MessageType.ONEWAY)
_REPLY: Final = int(MessageType.REPLY)
_EXCEPTION: Final = int(MessageType.EXCEPTION)
_REPLY_INT: Final = {int(IntKey.MSG_TYPE): str(_REPLY)}
_EXCEPTION_INT: Final = {int(IntKey.MSG_TYPE): str(_EXCEPTION)}
_REPLY_INFO = header_info({}, _REPLY_INT)
_CONN_RESET: Final = CONN_RESET_KEY
_BIZ_STATUS: Final = BIZ_STATUS_KEY
_BIZ_MESSAGE: Final = BIZ_MESSAGE_KEY
_BIZ_EXTRA: Final = BIZ_EXTRA_KEY
_RPC_TIMEOUT, _FROM_SERVICE, _FROM_METHOD = (
    int(IntKey.RPC_TIMEOUT),
    int(IntKey.FROM_SERVICE),
    int(IntKey.FROM_METHOD),
)

SHAPE_CACHE_SIZE = 4096  # (header info, method, envelope) combinations remembered per server


class Shape:
    """What every request with the same header-info area, method name and envelope shares.

    Kitex clients send identical header bytes on every call of a method (the seq id lives outside
    the info area), and the decoder hands out one :class:`HeaderInfo` per distinct area, so routing,
    the metainfo split, the deadline key, the caller's names and the reply encoder are worked out
    once per shape (:meth:`RequestServing.shape`) instead of once per request.
    """

    __slots__ = (
        "entry",
        "from_method",
        "from_service",
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
        self.from_service = int_info.get(_FROM_SERVICE, "")
        self.from_method = int_info.get(_FROM_METHOD, "")
        self.reply = MessageEncoder(message.framing, message.envelope, message.method, _REPLY, _REPLY_INFO)


class RequestServing:
    """Serves decoded requests for one server: routing (with a cache of :class:`Shape`), the call
    through the dispatcher, and the reply or exception written back."""

    def __init__(self, dispatcher: CallDispatcher, events: EventLog) -> None:
        self.dispatcher = dispatcher
        self.events = events
        self.address = ""  # the server's, once it listens (the rpcinfo's local address)
        self.draining = False  # a graceful stop has begun: replies carry crrst
        self._shapes: dict[tuple[HeaderInfo | None, str, Envelope], Shape] = {}

    def shape(self, message: Message) -> Shape:
        """The :class:`Shape` of a request (cached), or :class:`RouteError` when no method serves it."""
        info = message.info
        key = (info, message.method, message.envelope)
        shape = self._shapes.get(key)
        if shape is None:
            shape = Shape(self.dispatcher, message)
            if info is None or (len(info.raw) <= INFO_CACHE_MAX_BYTES and info.raw):
                if len(self._shapes) >= SHAPE_CACHE_SIZE:
                    self._shapes.clear()
                self._shapes[key] = shape
        return shape

    async def serve(self, conn: ServerConnection, message: Message) -> None:
        """Serve one request and write its reply (none for one-way) to ``conn``."""
        if message.msg_type != _CALL and message.msg_type != _ONEWAY:
            self.reject(
                conn,
                message,
                f"invalid message type {message.msg_type} for a request",
                TApplicationType.INVALID_MESSAGE_TYPE,
            )
            return
        try:
            shape = self.shape(message)
        except RouteError as exc:
            self.reject(conn, message, exc.detail, exc.type_id)
            return
        except Exception as bad:  # a header nothing can be served from: answered, never dropped
            # (not `exc`: compiled, a name keeps the type of its first binding in the function)
            self.reject(conn, message, f"bad request header: {bad}", TApplicationType.PROTOCOL_ERROR)
            return
        method = shape.method
        try:
            request = method.deserialize_request(message.body)
        except Exception as undecodable:
            self.reject(
                conn, message, f"decode {method.name} request: {undecodable}", TApplicationType.PROTOCOL_ERROR
            )
            return
        message.body = b""  # decoded: not held while the handler runs (a large request counts twice)
        oneway = message.msg_type == _ONEWAY or method.oneway
        timeout = shape.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        head = CallHead(
            shape.entry,
            list(shape.metadata),
            shape.transient,
            shape.persistent,
            deadline,
            conn.peer,
            self.address,
            shape.from_service,  # int keys 3 and 20; "" when absent, as for an unnamed caller
            shape.from_method,
            message.seq_id,
        )
        biz: BizStatusError | None = None
        try:
            result = await self.dispatcher.serve_unary(head, request)
        except BizStatusError as status:
            biz = status
            result = method.response_type() if method.response_type is not None else None
        except Exception as failed:
            if oneway:
                return
            text, type_id = exception_fields(failed)
            failed_backward = head.backward  # None only if the dispatcher failed before the chain
            sent = failed_backward.sent if failed_backward is not None else {}
            self.write_exception(conn, message, text, type_id, sent)
            return
        if oneway:
            return
        backward = head.backward  # the handler's backward values: read, never kept
        assert backward is not None  # filled by serve_unary before the chain ran
        try:
            body = method.serialize_response(result)
        except Exception as unencodable:
            logger.error("ttheader server: cannot encode the %s reply: %s", method.name, unencodable)
            self.write_exception(
                conn,
                message,
                f"encode {method.name} reply: {unencodable}",
                TApplicationType.PROTOCOL_ERROR,
                {},
            )
            return
        draining = self.draining
        if message.info is not None and (biz is not None or backward.sent or draining):
            reply_info: dict[str, str] = {}
            if biz is not None:
                reply_info[_BIZ_STATUS] = str(biz.code)
                reply_info[_BIZ_MESSAGE] = biz.message
                if biz.extra:
                    reply_info[_BIZ_EXTRA] = biz.encode_extra()
            reply_info.update(backward.sent)
            if draining:
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
        conn.write(data)

    def write_exception(
        self,
        conn: ServerConnection,
        message: Message,
        text: str,
        type_id: int,
        str_info: dict[str, str],
        reset: bool = False,
    ) -> None:
        """Answer ``message`` with an EXCEPTION; over TTHeader with ``str_info`` and, when ``reset``
        or draining, ``crrst``."""
        envelope = message.envelope
        body = envelope.encode_exception(text, type_id)
        name = message.method or "unknown"
        if message.info is not None:
            info = dict(str_info)
            if reset or self.draining:
                info[_CONN_RESET] = "1"
            data = encode(
                message.framing, envelope, name, _EXCEPTION, message.seq_id, body, info, _EXCEPTION_INT
            )
        else:
            data = encode(message.framing, envelope, name, _EXCEPTION, message.seq_id, body)
        conn.write(data)

    def reject(self, conn: ServerConnection, message: Message, text: str, type_id: int) -> None:
        """Answer a request that cannot be served with an exception tagged ``crrst``, then close."""
        self.events.log(
            "rejected",
            logging.WARNING,
            "ttheader server: %s from %s (seq %d): %s; closing the connection",
            message.method or "<no method>",
            conn.peer,
            message.seq_id,
            text,
        )
        if message.msg_type != _ONEWAY:
            self.write_exception(conn, message, text, type_id, {}, reset=True)
        conn.close_after_write()
