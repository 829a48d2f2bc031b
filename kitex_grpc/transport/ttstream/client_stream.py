"""The client's half of one ttstream stream (KITEX-WIRE-2.md §11.7-11.9).

How a stream ends, and what ``recv`` raises then (after every message that arrived before):

* the server's Trailer: a clean end (``EOFError``), a :class:`~kitex_grpc.errors.BizStatusError`
  (``biz-status`` and friends), or an :class:`ApplicationError` (the EXCEPTION payload; Kitex's 12001);
* an Rst from the server (only proxies send one): :class:`~kitex_grpc.errors.CanceledError` (12009);
* ``cancel()``: an Rst with code 12007 goes out, then ``recv`` raises CanceledError;
* the caller's deadline: an Rst with code 12015, then :class:`~kitex_grpc.errors.RPCTimeoutError`;
* a receive timeout (``with_stream_recv_timeout``): an Rst with code 12014, then RPCTimeoutError;
* the connection lost: :class:`~kitex_grpc.errors.RemoteOrNetworkError`.

Every Rst carries the cancel path ``ttscp`` (the caller's service name, when it has one) and is
followed by the Trailer when the stream had not half-closed, as Kitex's ``clientStream.close`` does.
When the server ends the stream before the client half-closed, the client sends that compatibility
Trailer too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Final

from kitex_grpc.errors import (
    BIZ_EXTRA_KEY,
    BIZ_MESSAGE_KEY,
    BIZ_STATUS_KEY,
    BizStatusError,
    CanceledError,
    KitexError,
    ProtocolError,
    RemoteOrNetworkError,
    RPCTimeoutError,
)
from kitex_grpc.protocol.ttstream import (
    CANCEL_PATH_KEY,
    FrameType,
    StreamFrame,
    decode_exception_payload,
    encode_exception_payload,
    encode_stream_frame,
    encode_with_info,
    frame_info,
)
from kitex_grpc.protocol.ttstream_state import Event, StreamState
from kitex_grpc.transport.ttheader.errors import ApplicationError
from kitex_grpc.transport.ttstream.queue import RecvQueue

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo
    from kitex_grpc.transport.ttstream.client import ClientConnection

__all__ = ["ClientStream"]

# ttstream exception codes a client puts in its Rst (pkg/remote/trans/ttstream/exception.go).
CODE_UNEXPECTED_HEADER: Final = 12002
CODE_ILLEGAL_FRAME: Final = 12004
CODE_BIZ_CANCEL: Final = 12007
CODE_RECV_TIMEOUT: Final = 12014
CODE_STREAM_TIMEOUT: Final = 12015


class ClientStream:
    """A :class:`~kitex_grpc.streaming.StreamIO` over one ttstream stream id."""

    __slots__ = (
        "_conn",
        "_data_info",
        "_done",
        "_queue",
        "_recv_timeout",
        "_state",
        "_timer",
        "method",
        "ri",
        "sid",
    )

    def __init__(
        self, conn: ClientConnection, sid: int, ri: RPCInfo, limit: int, recv_timeout: float | None
    ) -> None:
        self._conn = conn
        self.sid = sid
        self.ri = ri
        self.method = ri.method.name
        self._data_info = frame_info(FrameType.DATA, self.method)
        self._queue = RecvQueue(conn, limit)
        self._state = StreamState(client=True)
        self._recv_timeout = recv_timeout
        self._done: BaseException | None = None  # set once the stream is over locally or remotely
        self._timer: asyncio.TimerHandle | None = None
        if ri.deadline is not None:
            delay = max(0.0, ri.deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._deadline_passed)

    # -- StreamIO -------------------------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        if self._done is not None:
            raise self._done
        if self._state.send_closed:
            raise ProtocolError("ttstream: stream is closed send")
        payload = self.ri.method.serialize_request(message)
        conn = self._conn
        if conn.write_paused:
            await conn.writable()
        if conn.closed:
            raise RemoteOrNetworkError("ttstream: connection closed")
        conn.write(encode_with_info(self.sid, self._data_info, payload))

    async def recv(self) -> Any:
        timeout = self._recv_timeout
        if timeout is None:
            payload = await self._queue.get()
        else:
            try:
                async with asyncio.timeout(timeout):
                    payload = await self._queue.get()
            except TimeoutError:
                error = RPCTimeoutError(f"ttstream: stream Recv timeout ({timeout}s)")
                self._reset(error, CODE_RECV_TIMEOUT)
                raise error from None
        try:
            return self.ri.method.deserialize_response(payload)
        except Exception as exc:
            raise ProtocolError(f"ttstream: cannot decode a {self.method} reply: {exc}") from exc

    async def close_send(self) -> None:
        state = self._state
        if state.send_closed or self._done is not None:
            return
        state.before_trailer()
        self._conn.write(encode_stream_frame(FrameType.TRAILER, self.sid, self.method))

    def cancel(self) -> None:
        self._reset(CanceledError("ttstream: canceled by business code (code=12007)"), CODE_BIZ_CANCEL)

    # -- frames from the connection -------------------------------------------------------------------

    def on_frame(self, frame: StreamFrame) -> None:
        try:
            event = self._state.receive(frame.type)
        except ProtocolError as exc:  # a second Header: Kitex errUnexpectedHeader
            self._reset(exc, CODE_UNEXPECTED_HEADER)
            return
        if event is Event.MESSAGE:
            self._queue.put(frame.payload)
        elif event is Event.HEADER:
            self.ri.response_headers.extend(frame.str_info.items())
            self.ri.response_metadata.extend(frame.str_info.items())
        elif event is Event.END:
            try:
                error = self._trailer_error(frame)
            except ProtocolError as exc:
                self._reset(exc, CODE_ILLEGAL_FRAME)
                return
            self._end(error)
        elif event is Event.RESET:
            message = "rst"
            if frame.payload:
                with contextlib.suppress(ProtocolError):  # an Rst ends the stream whatever it says
                    message, _type = decode_exception_payload(frame.payload)
            self._end(CanceledError(f"ttstream: canceled by downstream: {message}", remote=True))

    def _trailer_error(self, frame: StreamFrame) -> KitexError | None:
        strs = frame.str_info
        user = [(k, v) for k, v in strs.items() if k not in (BIZ_STATUS_KEY, BIZ_MESSAGE_KEY, BIZ_EXTRA_KEY)]
        self.ri.response_trailers.extend(user)
        self.ri.response_metadata.extend(user)
        if frame.payload:  # a non-empty payload wins (stream_client.go onReadTrailerFrame)
            message, type_id = decode_exception_payload(frame.payload)
            if type_id == CODE_STREAM_TIMEOUT:  # a Python server's handler ran past the deadline we sent
                return RPCTimeoutError(message, remote=True)
            return ApplicationError(message, type_id)
        status = strs.get(BIZ_STATUS_KEY)
        if status is None:
            return None
        return BizStatusError.from_fields(status, strs.get(BIZ_MESSAGE_KEY, ""), strs.get(BIZ_EXTRA_KEY))

    def connection_lost(self, error: BaseException | None) -> None:
        detail = f": {error}" if error is not None else ""
        self._end(RemoteOrNetworkError(f"ttstream: connection closed{detail}"), write=False)

    # -- ending ---------------------------------------------------------------------------------------

    def _deadline_passed(self) -> None:
        self._timer = None
        self._reset(
            RPCTimeoutError("ttstream: stream timeout (the call's deadline passed)"), CODE_STREAM_TIMEOUT
        )

    def _reset(self, error: BaseException, code: int) -> None:
        """End locally: Rst (and the Trailer, if not half-closed yet), then ``recv`` raises ``error``."""
        if self._done is not None:
            return
        self._queue.abort(error)
        conn = self._conn
        path = self.ri.caller.service_name
        strs = {CANCEL_PATH_KEY: path} if path else None
        payload = encode_exception_payload(self.method, self.sid, str(error), code)
        conn.write(encode_stream_frame(FrameType.RST, self.sid, self.method, payload, strs))
        self._finish(error)

    def _end(self, error: BaseException | None, *, write: bool = True) -> None:
        if self._done is not None:
            return
        self._queue.end(error)
        if not write:
            self._state.send_closed = True
        self._finish(error or EOFError())

    def _finish(self, error: BaseException) -> None:
        self._done = error if not isinstance(error, EOFError) else ProtocolError("ttstream: stream is over")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._state.send_closed:  # the compatibility Trailer (stream_client.go close)
            self._state.before_trailer()
            self._conn.write(encode_stream_frame(FrameType.TRAILER, self.sid, self.method))
        self._conn.stream_done(self)
