"""The h2 client transport: one multiplexed HTTP/2 connection per instance address.

- Dial: TCP (TLS with ALPN ``h2`` when ``with_tls`` is set, else h2c with prior knowledge, RFC 9113
  §3.3), then wait for the server's first SETTINGS, all within ``ri.config.connect_timeout``;
  failures are :class:`~kitex_grpc.errors.GetConnectionError`. Concurrent callers share one dial.
- Reuse: every call to an address shares its connection until it breaks or receives GOAWAY; the next
  call then dials again. Calls on a broken connection fail with an UNAVAILABLE
  :class:`~kitex_grpc.errors.RemoteOrNetworkError`.
- Request headers as Kitex sends them: ``:authority`` = destination service name, ``user-agent``
  ``kitex-grpc/<version>``, ``grpc-timeout`` from ``ri.deadline``, metainfo as ``rpc-transit-*`` /
  ``rpc-persist-*`` headers, gzip when ``ri.config.compression`` says so, and on every call
  ``grpc-accept-encoding`` with every encoding we inflate (so a server may compress its replies).
- Response metadata: headers and trailers apart in ``ri.response_headers`` / ``ri.response_trailers``
  (a stream's as they arrive), and both, headers first, in ``ri.response_metadata``; on success and
  on failure. ``Stream.disable_next_message_compression`` sends one request message uncompressed.
- One-way calls (``MethodInfo.oneway``): the request goes out with END_STREAM and the call returns
  ``None`` once it was handed to the socket. The server runs the handler and answers as for a unary
  call; the client keeps the stream open until those trailers arrive and discards them (an error
  status is not reported), so the server never sees the call cancelled.
- Discovery hooks: :meth:`H2ClientTransport.close_address` retires an address's connection (no new
  call on it; the calls in flight finish, then it closes; the next call dials again) and
  :meth:`H2ClientTransport.preconnect` dials it ahead of the first call (warm-up).
- The connections per address are reported as the ``kitex.client.connection_pool.size`` gauge
  (:func:`kitex_grpc.observability.metrics.register_pool_size`, attribute ``transport="grpc_h2"``).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kitex_grpc import metainfo
from kitex_grpc.address import parse_address
from kitex_grpc.errors import (
    CanceledError,
    GetConnectionError,
    InternalError,
    KitexError,
    OverLimitError,
    ProtocolError,
    RPCTimeoutError,
)
from kitex_grpc.protocol.h2_call import GrpcClientConnection, StreamClosedError
from kitex_grpc.serviceinfo import PayloadCodec
from kitex_grpc.transport import pool_gauges
from kitex_grpc.transport.h2 import config as _config
from kitex_grpc.transport.h2.client_conn import ClientCall, ClientConnection, ConnectionUnusableError
from kitex_grpc.transport.h2.config import H2Tuning
from kitex_grpc.transport.h2.status import connection_error
from kitex_grpc.transport.identity import identity_headers

if TYPE_CHECKING:
    import ssl

    from kitex_grpc.rpcinfo import Metadata, RPCInfo
    from kitex_grpc.serviceinfo import MethodInfo
    from kitex_grpc.transport.settings import ClientSettings

_START_ATTEMPTS = 3  # a call whose connection went away (GOAWAY) before its stream opened retries


def _pool_states(ref: weakref.ReferenceType[H2ClientTransport]) -> Iterator[tuple[str, str, int, int]]:
    transport = ref()
    if transport is not None:
        for conn in (*transport.connections.values(), *transport.retiring):
            if not conn.closed:
                active = 1 if conn.calls else 0
                yield "grpc_h2", conn.address, active, 1 - active


class H2ClientTransport:
    """A :class:`~kitex_grpc.transport.base.ClientTransport` over our own HTTP/2 connections.

    ``tuning`` holds the transport's knobs (:class:`~kitex_grpc.transport.h2.config.H2Tuning`); the
    ``client.with_grpc_*`` options (windows, keepalive, max header list size) are applied on top.
    """

    def __init__(self, options: ClientSettings, tuning: H2Tuning | None = None) -> None:
        self._options = options
        base = tuning if tuning is not None else _config.CLIENT_TUNING
        self._tuning = tuning = base.with_options(options)  # the with_grpc_* options win
        self._max_message_size = options.max_message_size
        self._ssl: ssl.SSLContext | None = None
        self._server_hostname: str | None = None
        if options.tls is not None:
            self._ssl = options.tls.client_ssl_context(["h2"])
            self._server_hostname = options.tls.server_hostname
        self._config = tuning.core_config(
            max_message_size=options.max_message_size, scheme="http" if self._ssl is None else "https"
        )
        self.connections: dict[str, ClientConnection] = {}
        # Connections close_address took out of use: they close once their last call ended.
        self.retiring: set[ClientConnection] = set()
        self._dialing: dict[str, asyncio.Task[ClientConnection]] = {}
        self._closed = False
        # The gauge holds the transport weakly; one nobody closed unregisters when it is collected.
        ref = weakref.ref(self)
        self._unregister_gauge = pool_gauges.register_sizes_weakly(self)
        self._unregister_states = weakref.finalize(
            self, pool_gauges.register_states(lambda: _pool_states(ref))
        )

    def pool_sizes(self) -> list[tuple[Mapping[str, str], int]]:
        """``({"address": ..., "transport": "grpc_h2"}, n)``: the open connections per address (the
        one in use, plus retired ones still finishing their calls)."""
        open_conns = (*self.connections.values(), *self.retiring)
        return pool_gauges.size_rows("grpc_h2", [c.address for c in open_conns if not c.closed])

    # -- connections --------------------------------------------------------------------------------

    async def _connection(self, ri: RPCInfo) -> ClientConnection:
        address = ri.callee.address
        conn = self.connections.get(address)
        if conn is not None and conn.usable:
            pool_gauges.count("grpc_h2", address, pool_gauges.REUSE)
            return conn
        return await self._shared_dial(address, ri.config.connect_timeout)

    async def _shared_dial(self, address: str, connect_timeout: float) -> ClientConnection:
        """Dial ``address``, or join the dial already in progress (concurrent callers share one)."""
        if self._closed:
            raise InternalError("client transport is closed")
        task = self._dialing.get(address)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._dial(address, connect_timeout))
            self._dialing[address] = task
            task.add_done_callback(self._dial_done)
        return await asyncio.shield(task)

    def _dial_done(self, task: asyncio.Task[ClientConnection]) -> None:
        for address, pending in list(self._dialing.items()):
            if pending is task:
                del self._dialing[address]
                if not task.cancelled():
                    failed = task.exception() is not None
                    pool_gauges.count(
                        "grpc_h2", address, pool_gauges.DIAL_FAILURE if failed else pool_gauges.DIAL
                    )
        if not task.cancelled():
            task.exception()  # retrieved here: the callers that awaited it saw it already

    async def _dial(self, address: str, connect_timeout: float) -> ClientConnection:
        host, port = parse_address("with_host_ports", address)
        loop = asyncio.get_running_loop()
        conn: ClientConnection | None = None

        def factory() -> ClientConnection:
            nonlocal conn
            conn = ClientConnection(GrpcClientConnection(self._config), self._tuning, address)
            return conn

        try:
            async with asyncio.timeout(connect_timeout):
                if self._ssl is None:
                    await loop.create_connection(factory, host, port)
                else:
                    await loop.create_connection(
                        factory, host, port, ssl=self._ssl, server_hostname=self._server_hostname or host
                    )
                assert conn is not None
                if self._ssl is not None:
                    _check_alpn(conn, address)
                await conn.ready  # the server's SETTINGS: its stream limit is known before any call
        except TimeoutError:
            _drop(conn)
            raise GetConnectionError(
                f"dial {address} timed out after {connect_timeout * 1000:.0f}ms"
            ) from None
        except OSError as exc:
            _drop(conn)
            raise GetConnectionError(f"dial {address} failed: {exc}").with_cause(exc) from exc
        except KitexError as exc:
            _drop(conn)
            raise GetConnectionError(f"dial {address} failed: {exc}").with_cause(exc) from exc
        if self._closed:
            conn.close()
            raise InternalError("client transport is closed")
        self.connections[address] = conn
        return conn

    async def _start(self, ri: RPCInfo, *, auto_ack: bool) -> ClientCall:
        metadata: Metadata = [*identity_headers(ri), *metainfo.to_http2_headers(), *ri.metadata]
        service = ri.service
        subtype = "thrift" if service.payload_codec is PayloadCodec.THRIFT else ""
        for _ in range(_START_ATTEMPTS):
            conn = await self._connection(ri)
            try:
                return await conn.start_call(
                    service.grpc_path(ri.method.name),
                    ri.callee.service_name,  # Kitex: :authority is the destination service name
                    metadata=metadata,
                    deadline=ri.deadline,
                    content_subtype=subtype,
                    encoding=ri.config.compression,
                    auto_ack=auto_ack,
                )
            except ConnectionUnusableError:
                continue
        raise connection_error(f"no usable connection to {ri.callee.address}")

    def _encode(self, method: MethodInfo, message: Any) -> bytes:
        body = method.serialize_request(message)
        if len(body) > self._max_message_size:
            raise OverLimitError(
                f"trying to send message larger than max ({len(body)} vs. {self._max_message_size})"
            )
        return body

    # -- ClientTransport ----------------------------------------------------------------------------

    async def unary(self, ri: RPCInfo, request: Any) -> Any:
        method = ri.method
        body = self._encode(method, request)
        for attempt in range(1, _START_ATTEMPTS + 1):
            call = await self._start(ri, auto_ack=True)
            conn = call.conn
            try:
                conn.core.send_message(
                    call.stream_id, body, compressed=ri.config.compression is not None, end=True
                )
                if method.oneway:
                    await _written(conn, call)
                    return None
                conn.flush()
                while not call.ended:
                    await call.wait_recv()
            except asyncio.CancelledError:
                conn.cancel_call(call, CanceledError("call cancelled"))
                raise
            # A stream the server refused (RST_STREAM REFUSED_STREAM, or above a GOAWAY's last stream
            # id) was never processed (RFC 9113 §8.7, §6.8): it is sent again, as grpc-go's
            # transparent retry does (e.g. a call that raced the server closing an idle connection).
            if not call.refused or attempt == _START_ATTEMPTS:
                break
        response_md = ri.response_metadata
        if call.headers:
            response_md.extend(call.headers)
            ri.response_headers.extend(call.headers)
        if call.trailers:
            response_md.extend(call.trailers)
            ri.response_trailers.extend(call.trailers)
        if call.error is not None:
            raise call.error
        messages = call.messages
        if len(messages) != 1:
            raise ProtocolError(f"unary call got {len(messages)} response messages, want 1")
        try:
            return method.deserialize_response(messages[0][0])
        except Exception as exc:
            raise ProtocolError(f"cannot decode the response: {exc}").with_cause(exc) from exc

    async def open_stream(self, ri: RPCInfo) -> H2ClientStream:
        call = await self._start(ri, auto_ack=False)
        call.conn.flush()
        if ri.deadline is not None:
            conn = call.conn
            error = RPCTimeoutError(f"stream deadline exceeded, method={ri.method.name}")
            call.deadline_timer = conn.loop.call_later(
                max(0.0, ri.deadline - time.monotonic()), conn.cancel_call, call, error
            )
        return H2ClientStream(self, ri, call)

    async def close_address(self, address: str) -> None:
        """Retire the connection to ``address`` (an instance discovery removed).

        It takes no new call; the calls in flight on it finish, then it closes (at once when idle).
        The next call to ``address`` dials a new connection. A dial in progress is left alone.
        """
        self.retiring = {c for c in self.retiring if not c.closed}
        conn = self.connections.pop(address, None)
        if conn is None or conn.closed:
            return
        if not conn.calls:
            conn.close()
            return
        conn.closing = True  # ClientConnection closes itself once its last call ended
        self.retiring.add(conn)
        conn._release_streams()  # calls queued for a stream slot dial again instead

    async def preconnect(self, address: str, connect_timeout: float, conns: int | None = None) -> None:
        """Dial ``address`` now (warm-up); ``conns`` is not used: one connection multiplexes all calls.

        Raises :class:`~kitex_grpc.errors.GetConnectionError` when the dial fails.
        """
        conn = self.connections.get(address)
        if conn is None or not conn.usable:
            await self._shared_dial(address, connect_timeout)

    async def close(self) -> None:
        self._closed = True
        self._unregister_gauge()
        self._unregister_states()
        for task in list(self._dialing.values()):
            task.cancel()
        connections, self.connections = self.connections, {}
        retiring, self.retiring = self.retiring, set()
        for conn in (*connections.values(), *retiring):
            conn.close()

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in our structures over all connections (tests check that this stays bounded)."""
        return sum(conn.buffered_bytes for conn in self.connections.values())


class H2ClientStream:
    """One client stream as a :class:`~kitex_grpc.streaming.StreamIO`.

    ``send`` waits while more than the high-water mark of this stream waits for the peer's window
    (backpressure); ``recv`` hands a message's receive window back only when it is taken.
    """

    __slots__ = (
        "_call",
        "_compressed",
        "_conn",
        "_high_water",
        "_metadata_done",
        "_ri",
        "_skip_compression",
        "_transport",
    )

    def __init__(self, transport: H2ClientTransport, ri: RPCInfo, call: ClientCall) -> None:
        self._transport = transport
        self._ri = ri
        self._call = call
        self._conn = call.conn
        self._compressed = ri.config.compression is not None
        self._high_water = transport._tuning.send_high_water
        self._metadata_done = False
        self._skip_compression = False
        # No event loop turn since the stream opened: no response header can have arrived yet.
        call.header_sink = ri.response_headers
        call.trailer_sink = ri.response_trailers

    def disable_next_message_compression(self) -> None:
        self._skip_compression = True

    async def send(self, message: Any) -> None:
        call = self._call
        if call.ended:
            if call.error is not None:
                raise call.error
            return  # the server already ended the call with OK; recv reports the end
        body = self._transport._encode(self._ri.method, message)
        conn = self._conn
        sid = call.stream_id
        compressed = self._compressed
        if self._skip_compression:
            self._skip_compression = compressed = False
        try:
            conn.core.send_message(sid, body, compressed=compressed)
        except StreamClosedError:
            raise InternalError("send after close_send") from None
        await conn.flush_and_hold(call, self._high_water)

    async def recv(self) -> Any:
        call = self._call
        messages = call.messages
        while not messages:
            if call.ended:
                self._record_metadata()
                if call.error is not None:
                    raise call.error
                raise EOFError
            await call.wait_recv()
        body, held = messages.popleft()
        if held:
            call.conn.acknowledge(call, held)
        try:
            return self._ri.method.deserialize_response(body)
        except Exception as exc:
            self._conn.cancel_call(call, ProtocolError(f"cannot decode a response message: {exc}"))
            raise ProtocolError(f"cannot decode a response message: {exc}").with_cause(exc) from exc

    def _record_metadata(self) -> None:
        if not self._metadata_done:
            self._metadata_done = True
            self._ri.response_metadata.extend((*self._call.headers, *self._call.trailers))

    async def close_send(self) -> None:
        call = self._call
        if call.ended:
            return
        try:
            self._conn.core.end_stream(call.stream_id)
        except StreamClosedError:
            return
        self._conn.flush()

    def cancel(self) -> None:
        self._conn.cancel_call(self._call, CanceledError("stream cancelled locally"))


async def _written(conn: ClientConnection, call: ClientCall) -> None:
    """Wait until a one-way request left our buffers (the core's and asyncio's write buffer)."""
    while conn.core.pending_bytes(call.stream_id) and not call.ended:
        await call.wait_send()
    if conn.closed and call.error is not None:
        raise call.error  # the connection broke before the request could leave
    conn._write_now()
    await conn.wait_writable()


def _check_alpn(conn: ClientConnection, address: str) -> None:
    transport = conn.transport
    ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
    protocol = None if ssl_object is None else ssl_object.selected_alpn_protocol()
    if protocol != "h2":
        raise ProtocolError(f"the server did not negotiate ALPN h2 (got {protocol!r})")


def _drop(conn: ClientConnection | None) -> None:
    if conn is not None and conn.transport is not None:
        conn.transport.abort()
