"""Client transport: TTHeader / TTHeaderFramed / Framed requests over pooled long connections.

Per call (Kitex ``client/client.go``, ``pkg/transmeta/ttheader.go``, ``pkg/remote/remotecli``):

1. a process-global seq id (atomic +1 as an int32, skipping 0; ``pkg/rpcinfo/invocation.go``);
2. the envelope (Thrift or Kitex Protobuf) and, for TTHeader transports, the header a Kitex client
   with ``ClientTTHeaderHandler`` writes: int keys 1 TransportType, 3 FromService, 6 ToService,
   9 ToMethod, 20 FromMethod, 22 MsgType, plus 12 RPCTimeout when the timeout was set explicitly;
   str key ``isn`` and the metainfo of this hop (``RPC_TRANSIT_`` / ``RPC_PERSIST_``);
3. a connection from the pool (dialled within the connect timeout, else GetConnectionError);
4. one-way: write and discard the connection, as Kitex does; otherwise wait for the reply, check
   it, release the connection (or close it when the server sent ``crrst`` or an EXCEPTION it closes
   after, or anything went wrong);
5. ``biz-status`` → BizStatusError, every reply str key → the caller's backward values;
6. an EXCEPTION "biz error: context deadline exceeded" (type 6) to a request that carried int key 12
   → RPCTimeoutError (``remote``): the server's timer for our deadline beat the client's own.

Discovery and warm-up (:mod:`kitex_grpc.transport.base`): ``close_address`` closes an address's idle
connections at once and retires the ones in use, which close when their call releases them;
``preconnect`` dials connections straight into the idle pool, within its limits. The pool's size per
address (idle + in use) is reported as the ``kitex.client.connection_pool.size`` gauge
(:func:`kitex_grpc.transport.pool_gauges.register_pool_size`, attribute ``transport="ttheader"``).

Kitex forces Kitex Protobuf onto TTHeaderFramed (``client/client.go initTransportProtocol``), so a
protobuf service with ``TTHEADER`` is sent framed too. ``FRAMED`` has no header: no metainfo, no
timeout key, and a biz status is lost (the reply has an empty result, KITEX-WIRE.md §1.4).
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from kitex_grpc import metainfo, rpcinfo
from kitex_grpc.address import parse_address
from kitex_grpc.codec.envelope import KITEX_PROTOBUF, Envelope
from kitex_grpc.codec.kitex_protobuf import envelope_for
from kitex_grpc.errors import (
    BizStatusError,
    GetConnectionError,
    InternalError,
    OverLimitError,
    RPCTimeoutError,
    TApplicationType,
)
from kitex_grpc.header_keys import (
    BIZ_EXTRA_KEY,
    BIZ_MESSAGE_KEY,
    BIZ_STATUS_KEY,
    CONN_RESET_KEY,
    IDL_SERVICE_KEY,
)
from kitex_grpc.protocol.thrift_message import MessageType
from kitex_grpc.protocol.ttheader import IntKey
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.streaming import StreamIO
from kitex_grpc.transport import pool_gauges
from kitex_grpc.transport.settings import ClientSettings
from kitex_grpc.transport.ttheader.config import frame_limit as frame_limit  # its old home, still imported
from kitex_grpc.transport.ttheader.connection import ClientConnection
from kitex_grpc.transport.ttheader.errors import ApplicationError
from kitex_grpc.transport.ttheader.mux import MuxConnection, MuxPool
from kitex_grpc.transport.ttheader.pool import IdlePool
from kitex_grpc.transport.ttheader.wire import (
    Framing,
    Message,
    MessageEncoder,
    encode,
    header_info,
)
from kitex_grpc.transport_protocol import TransportProtocol

__all__ = ["TTHeaderClientTransport", "next_seq_id"]

_Conn = TypeVar("_Conn", ClientConnection, MuxConnection)

_FRAMINGS = {
    TransportProtocol.TTHEADER: Framing.TTHEADER,
    TransportProtocol.TTHEADER_FRAMED: Framing.TTHEADER_FRAMED,
    TransportProtocol.FRAMED: Framing.FRAMED,
}
_REPLY, _EXCEPTION = int(MessageType.REPLY), int(MessageType.EXCEPTION)
_CALL, _ONEWAY = int(MessageType.CALL), int(MessageType.ONEWAY)
# The EXCEPTION a server sends when the handler's deadline (int key 12) passed: a Go handler returns
# ctx.Err(), wrapped as ErrBiz (server/server.go invokeHandleEndpoint), type 6 InternalError; ours
# sends the same (transport.ttheader.errors.exception_fields).
_DEADLINE_EXCEEDED: Final = "biz error: context deadline exceeded"
_INTERNAL_ERROR: Final = int(TApplicationType.INTERNAL_ERROR)

_seq = 0


def next_seq_id() -> int:
    """Kitex's ``genSeqID``: a process-global int32 counter, +1 with wrap-around, never 0."""
    global _seq
    _seq = ((_seq + 1 + 0x80000000) & 0xFFFFFFFF) - 0x80000000
    if _seq == 0:
        _seq = 1
    return _seq


def _timeout_ms(seconds: float) -> str:
    return str(round(seconds * 1_000_000) // 1000)  # Go: int(timeout.Milliseconds()), truncating


def _server_closes(reply: Message, envelope: Envelope) -> bool:
    """Whether the server closes the connection after this EXCEPTION: any type but 6 (a handler's
    error, after which the connection stays) answers a request it could not serve (unknown method, a
    body it cannot decode), and Kitex closes the connection then
    (``pkg/remote/trans/default_server_handler.go``). Over TTHeader ``crrst`` says so too; over Framed
    nothing else does, and the pooled connection would fail the next call."""
    try:
        _, type_id = envelope.decode_exception(reply.body)
    except Exception:
        return True
    return type_id != _INTERNAL_ERROR


def _alive(conn: ClientConnection) -> bool:
    return conn.alive


def _pool_sizes(conns: set[ClientConnection | MuxConnection]) -> list[tuple[Mapping[str, str], int]]:
    """``({"address": ..., "transport": "ttheader"}, idle + in use)`` per address of live ``conns``."""
    return pool_gauges.size_rows("ttheader", [conn.address for conn in conns if conn.alive])


def _pool_states(
    conns: set[ClientConnection | MuxConnection], pool: IdlePool[ClientConnection]
) -> list[tuple[str, str, int, int]]:
    """``(transport, address, active, idle)`` per address: idle ones are those in the pool."""
    counts = collections.Counter(conn.address for conn in conns if conn.alive)
    out: list[tuple[str, str, int, int]] = []
    for address, n in counts.items():
        idle = pool.idle_count(address)
        out.append(("ttheader", address, n - idle, idle))
    return out


def _forget_dead(conns: set[ClientConnection | MuxConnection]) -> None:
    conns.difference_update([conn for conn in conns if not conn.alive])


class TTHeaderClientTransport:
    """Calls over TTHeader, TTHeaderFramed or Framed with a Kitex long-connection pool.

    ``protocol`` overrides ``options.transport_protocol`` (the TTHeader Streaming transport sends its
    unary calls over TTHeader)."""

    # Dial failures are GetConnectionError, a dead connection RemoteOrNetworkError: nothing for the
    # client's error_mapping layer to do (see kitex_grpc.transport.base.NETWORK_ERRORS_MAPPED).
    network_errors_mapped = True

    def __init__(self, options: ClientSettings, protocol: TransportProtocol | None = None) -> None:
        # The gauge holds the connection set, never the transport: a transport nobody closed is still
        # collected, and its finalizer then unregisters the gauge (close() runs it first, once). The
        # set is only ever changed in place.
        self._conns: set[ClientConnection | MuxConnection] = set()
        conns = self._conns
        pool: IdlePool[ClientConnection] = IdlePool(options.long_connection)
        unregister_sizes = pool_gauges.register_pool_size(lambda: _pool_sizes(conns))
        unregister_states = pool_gauges.register_states(lambda: _pool_states(conns, pool))

        def unregister() -> None:
            unregister_sizes()
            unregister_states()

        self._unregister_gauge = weakref.finalize(self, unregister)
        self._options = options
        self._framing = _FRAMINGS[options.transport_protocol if protocol is None else protocol]
        self._max_frame = frame_limit(options.max_message_size)
        self._max_message = options.max_message_size
        self._pool = pool
        # with_mux_connection: shared connections instead of the pool (see transport.ttheader.mux)
        self._mux = MuxPool(options.mux_connections, self._dial_mux) if options.mux_connections else None
        self._evictor: asyncio.TimerHandle | None = None
        self._closed = False
        self._encoders: dict[tuple[object, ...], MessageEncoder] = {}

    @property
    def pool(self) -> IdlePool[ClientConnection]:
        return self._pool

    def open_connections(self, address: str) -> int:
        """Live connections to ``address``: idle in the pool plus in use by a call."""
        return sum(1 for conn in self._conns if conn.address == address and conn.alive)

    def pool_sizes(self) -> list[tuple[Mapping[str, str], int]]:
        """``({"address": ..., "transport": "ttheader"}, idle + in use)`` per address (the pool gauge)."""
        return _pool_sizes(self._conns)

    # -- discovery and warm-up (the optional methods of kitex_grpc.transport.base) ---------------------------

    async def close_address(self, address: str) -> None:
        """Close the idle connections to ``address`` now; those in use close when released.

        The discovery bridge calls this when ``address`` leaves the resolver's result (Kitex's long
        pool cleans removed addresses). Connections dialled afterwards (the address came back, or a
        call still names it) are pooled as usual.
        """
        for conn in self._pool.remove_address(address):
            self._drop(conn)
        if self._mux is not None:
            self._mux.remove_address(address)
        for live in self._conns:
            if live.address == address:
                if isinstance(live, MuxConnection):
                    live.retire()  # closes now, or after the last reply of the calls on it
                else:
                    live.retired = True  # in use: _release closes it

    async def preconnect(self, address: str, connect_timeout: float, conns: int | None = None) -> None:
        """Warm-up: dial up to ``conns`` connections to ``address`` into the idle pool.

        ``conns`` defaults to the pool's ``min_idle_per_address`` (at least 1). Only as many are dialled
        as the pool may hold (``max_idle_per_address`` minus those idle, within ``max_idle_global``).
        The dials run together within one ``connect_timeout``; the connections that opened are pooled
        even when another failed, and the first failure is raised as GetConnectionError.
        """
        if self._closed:
            raise InternalError("client transport is closed")
        if self._mux is not None:  # every shared connection of the address (``conns`` does not apply)
            mux = self._mux
            await asyncio.gather(*(mux.get(address, connect_timeout) for _ in range(mux.size)))
            return
        wanted = max(1, self._pool.config.min_idle_per_address) if conns is None else conns
        count = min(wanted, self._pool.room(address))
        if count <= 0:
            return
        results = await asyncio.gather(
            *(self._dial(address, connect_timeout) for _ in range(count)), return_exceptions=True
        )
        error: BaseException | None = None
        for result in results:
            if isinstance(result, ClientConnection):
                self._release(result)
            elif error is None:
                error = result
        if error is not None:
            raise error

    # -- the ClientTransport interface --------------------------------------------------------------------

    async def unary(self, ri: RPCInfo, request: Any) -> Any:
        method = ri.method
        if method.mode.is_streaming:
            raise InternalError(f"{self._framing.value} transport cannot stream (method {method.name})")
        envelope = envelope_for(ri.service)
        framing = self._framing
        if framing is Framing.TTHEADER and envelope is KITEX_PROTOBUF:
            framing = Framing.TTHEADER_FRAMED
        seq_id = next_seq_id()
        ri.seq_id = seq_id
        msg_type = _ONEWAY if method.oneway else _CALL
        body = method.serialize_request(request)
        if len(body) > self._max_message:
            # Refused here, as the gRPC transports do: the server would close the connection at the
            # frame's length, and the call would fail with a bare "closed by peer".
            raise OverLimitError(
                f"trying to send message larger than max ({len(body)} vs. {self._max_message})"
            )
        if framing.has_header:
            data = self._encode_with_header(ri, framing, envelope, msg_type, seq_id, body)
        else:
            key = (framing, envelope, msg_type, method.name)
            encoder = self._encoders.get(key)
            if encoder is None:
                encoder = self._remember(key, MessageEncoder(framing, envelope, method.name, msg_type, b""))
            data = encoder.encode(seq_id, body)
        mux = self._mux
        if mux is not None:
            # Inline rather than a helper coroutine: every await level is paid again on each resumption.
            if self._closed:
                raise InternalError("client transport is closed")
            address = ri.callee.address
            mux_conn = mux.ready(address)
            if mux_conn is None:
                _forget_dead(self._conns)  # the ones the pool replaces
                mux_conn = await mux.get(address, ri.config.connect_timeout)
            if method.oneway:
                mux_conn.send(data)
                return None
            waiter = mux_conn.start(seq_id, data)
            try:
                reply = await waiter
            except BaseException:
                mux_conn.forget(seq_id, waiter)
                raise
            return self._result(ri, reply, envelope)
        conn = await self._acquire(ri)
        if method.oneway:
            # Kitex writes a one-way request and discards the connection (remotecli/conn_wrapper.go).
            try:
                conn.send(data)
            finally:
                self._drop(conn)
            return None
        try:
            reply = await conn.start(data)  # the future itself: no coroutine level in between
        except BaseException:
            self._drop(conn)  # cancelled or failed mid-call: the stream state is unknown
            raise
        if CONN_RESET_KEY in reply.str_info or (
            reply.msg_type == _EXCEPTION and _server_closes(reply, envelope)
        ):
            self._drop(conn)
        else:
            self._release(conn)
        return self._result(ri, reply, envelope)

    async def open_stream(self, ri: RPCInfo) -> StreamIO:
        raise InternalError(
            f"{ri.config.transport_protocol.name} cannot stream: use GRPC or GRPC_H2 for {ri.method.name}"
        )

    async def close(self) -> None:
        self._closed = True
        if self._evictor is not None:
            self._evictor.cancel()
            self._evictor = None
        self._unregister_gauge()
        self._pool.clear()
        if self._mux is not None:
            self._mux.clear()
        conns = list(self._conns)
        self._conns.clear()
        for conn in conns:
            conn.close()

    # -- request ------------------------------------------------------------------------------------------

    def _encode_with_header(
        self, ri: RPCInfo, framing: Framing, envelope: Envelope, msg_type: int, seq_id: int, body: bytes
    ) -> bytes:
        str_info = metainfo.to_ttheader_strinfo()
        name = ri.method.name
        config = ri.config
        timeout = config.rpc_timeout if config.rpc_timeout_set and config.rpc_timeout else None
        metadata = ri.metadata
        if not str_info and not (metadata and any(isinstance(value, str) for _, value in metadata)):
            # The common header (only isn, int keys fixed per method and caller): its info area and
            # the message head are encoded once; each call packs its lengths and seq id around them.
            served = rpcinfo.current()
            key = (
                framing,
                envelope,
                msg_type,
                name,
                ri.caller.service_name,
                served.method.name if served is not None else "",
                ri.callee.service_name,
                ri.service.service_name,
                timeout,
            )
            encoder = self._encoders.get(key)
            if encoder is None:
                strs, ints = self._header(ri, framing, msg_type, {}, timeout)
                encoder = self._remember(
                    key, MessageEncoder(framing, envelope, name, msg_type, header_info(strs, ints))
                )
            return encoder.encode(seq_id, body)
        # Metainfo or metadata to send: this header is encoded afresh.
        strs, ints = self._header(ri, framing, msg_type, str_info, timeout)
        return encode(framing, envelope, name, msg_type, seq_id, body, strs, ints)

    def _remember(self, key: tuple[object, ...], encoder: MessageEncoder) -> MessageEncoder:
        if len(self._encoders) >= 1024:
            self._encoders.clear()
        self._encoders[key] = encoder
        return encoder

    def _header(
        self, ri: RPCInfo, framing: Framing, msg_type: int, str_info: dict[str, str], timeout: float | None
    ) -> tuple[dict[str, str], dict[int, str]]:
        served = rpcinfo.current()
        int_info: dict[int, str] = {
            IntKey.TRANSPORT_TYPE: "framed" if framing is Framing.TTHEADER_FRAMED else "unframed",
            IntKey.FROM_SERVICE: ri.caller.service_name,
            IntKey.FROM_METHOD: served.method.name if served is not None else "",
            IntKey.TO_SERVICE: ri.callee.service_name,
            IntKey.TO_METHOD: ri.method.name,
            IntKey.MSG_TYPE: str(msg_type),
        }
        if timeout is not None:
            int_info[IntKey.RPC_TIMEOUT] = _timeout_ms(timeout)
        str_info[IDL_SERVICE_KEY] = ri.service.service_name
        for key, value in ri.metadata:
            if isinstance(value, str):
                str_info.setdefault(key, value)
        return str_info, int_info

    # -- reply --------------------------------------------------------------------------------------------

    def _result(self, ri: RPCInfo, reply: Message, envelope: Envelope) -> Any:
        method = ri.method
        biz: BizStatusError | None = None
        info = reply.str_info
        if info:
            ri.response_metadata = list(info.items())
            # Kitex copies every reply str key into the caller's backward values (metainfo/backward.go).
            receiver = metainfo.backward_receiver()
            if receiver is not None:
                receiver.received.update(info)
            if BIZ_STATUS_KEY in info:
                biz = BizStatusError.from_fields(
                    info[BIZ_STATUS_KEY], info.get(BIZ_MESSAGE_KEY, ""), info.get(BIZ_EXTRA_KEY)
                )
        msg_type = reply.msg_type
        if msg_type == _EXCEPTION:
            # No name or seq check on an EXCEPTION: proxies may send seq id 0 (codec/thrift/thrift.go).
            message, type_id = envelope.decode_exception(reply.body)
            if type_id == _INTERNAL_ERROR and message == _DEADLINE_EXCEEDED and self._sent_timeout(ri):
                # The server's timer for the deadline we sent fired first and its reply won the race
                # with ours: the same timeout, as the gRPC transports map DEADLINE_EXCEEDED.
                raise RPCTimeoutError(message, remote=True)
            raise ApplicationError(message, type_id)
        if msg_type != _REPLY:
            raise ApplicationError(
                f"{method.name}: invalid message type {msg_type}", TApplicationType.INVALID_MESSAGE_TYPE
            )
        if reply.method != method.name:
            raise ApplicationError(
                f"wrong method name: got {reply.method!r}, want {method.name!r}",
                TApplicationType.WRONG_METHOD_NAME,
            )
        if reply.seq_id != ri.seq_id:
            raise ApplicationError(
                f"{method.name}: out of order sequence response: got {reply.seq_id}, want {ri.seq_id}",
                TApplicationType.BAD_SEQUENCE_ID,
            )
        result = method.deserialize_response(reply.body)
        if biz is not None:
            raise biz
        return result

    def _sent_timeout(self, ri: RPCInfo) -> bool:
        """Whether the request carried int key 12, the deadline a server enforces (see _header)."""
        config = ri.config
        return self._framing.has_header and config.rpc_timeout_set and bool(config.rpc_timeout)

    # -- pool ---------------------------------------------------------------------------------------------

    async def _acquire(self, ri: RPCInfo) -> ClientConnection:
        if self._closed:
            raise InternalError("client transport is closed")
        address = ri.callee.address
        conn, dead = self._pool.get(address, _alive)
        for d in dead:
            self._drop(d)
        if conn is not None:
            pool_gauges.count("ttheader", address, pool_gauges.REUSE)
            return conn
        return await self._dial(address, ri.config.connect_timeout)

    async def _dial(self, address: str, connect_timeout: float) -> ClientConnection:
        return await self._connect(address, connect_timeout, ClientConnection)

    async def _dial_mux(self, address: str, connect_timeout: float) -> MuxConnection:
        return await self._connect(address, connect_timeout, MuxConnection)

    async def _connect(
        self, address: str, connect_timeout: float, protocol: Callable[[str, Framing, int], _Conn]
    ) -> _Conn:
        try:
            host, port = parse_address("address", address)
        except ValueError as exc:
            raise GetConnectionError(str(exc)) from None
        loop = asyncio.get_running_loop()
        framing, limit = self._framing, self._max_frame
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(lambda: protocol(address, framing, limit), host, port)
        except TimeoutError:
            pool_gauges.count("ttheader", address, pool_gauges.DIAL_FAILURE)
            raise GetConnectionError(
                f"dial tcp {address}: timed out after {connect_timeout * 1000:.0f}ms"
            ) from None
        except OSError as exc:
            pool_gauges.count("ttheader", address, pool_gauges.DIAL_FAILURE)
            raise GetConnectionError(f"dial tcp {address}: {exc}").with_cause(exc) from exc
        pool_gauges.count("ttheader", address, pool_gauges.DIAL)
        if self._closed:
            conn.close()
            raise InternalError("client transport is closed")
        self._conns.add(conn)
        return conn

    def _release(self, conn: ClientConnection) -> None:
        if self._closed or not conn.alive or conn.retired:
            self._drop(conn)
            return
        for extra in self._pool.put(conn.address, conn, time.monotonic()):
            self._drop(extra)
        if self._evictor is None and self._pool.global_idle:
            self._schedule_evict()

    def _drop(self, conn: ClientConnection) -> None:
        self._conns.discard(conn)
        conn.close()

    def _schedule_evict(self) -> None:
        loop = asyncio.get_running_loop()
        self._evictor = loop.call_later(self._pool.config.max_idle_timeout, self._evict)

    def _evict(self) -> None:
        self._evictor = None
        for conn in self._pool.evict(time.monotonic()):
            self._drop(conn)
        if self._pool.global_idle and not self._closed:
            self._schedule_evict()
