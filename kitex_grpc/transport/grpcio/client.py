"""Client transport on grpc.aio: one channel per instance address, one multicallable per method.

The channels per address are reported as the ``kitex.client.connection_pool.size`` gauge
(:func:`kitex_grpc.transport.pool_gauges.register_pool_size`, attribute ``transport="grpc"``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import grpc

from kitex_grpc import metainfo
from kitex_grpc.errors import CanceledError, GetConnectionError, InternalError, RPCTimeoutError
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.transport import pool_gauges
from kitex_grpc.transport.grpcio.status import error_for_undefined_code, error_from_rpc_error
from kitex_grpc.transport.h2.config import SERVER_MAX_CONCURRENT_STREAMS
from kitex_grpc.transport.identity import identity_headers
from kitex_grpc.transport.settings import ClientSettings, GrpcSettings, ServerSettings

_COMPRESSION = {None: None, "gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}
_StreamCall = Any  # grpc.aio.StreamStreamCall (its stubs are not generic-friendly)
# The status text of a call grpcio failed because no connection to the address could be made.
_CONNECT_FAILED = "failed to connect to all addresses"


def grpc_h2_args(options: GrpcSettings) -> list[tuple[str, int]]:
    """The ``with_grpc_*`` options that have an exact grpcio channel/server argument (the windows have
    none: they apply to GRPC_H2 only)."""
    args: list[tuple[str, int]] = []
    if options.grpc_keepalive_time is not None:
        args.append(("grpc.keepalive_time_ms", round(options.grpc_keepalive_time * 1000)))
    if options.grpc_keepalive_timeout is not None:
        args.append(("grpc.keepalive_timeout_ms", round(options.grpc_keepalive_timeout * 1000)))
    if options.grpc_max_header_list_size is not None:
        args.append(("grpc.max_metadata_size", options.grpc_max_header_list_size))
    if isinstance(options, ServerSettings):
        # The same finite default as the GRPC_H2 server (README "Limits and defaults"); grpcio's own is
        # unlimited, which lets one client hold any number of abandoned streams.
        streams = options.grpc_max_concurrent_streams
        limit = SERVER_MAX_CONCURRENT_STREAMS if streams is None else streams
        args.append(("grpc.max_concurrent_streams", limit))
    return args


class GrpcioClientTransport:
    """Sends calls through grpc.aio channels created lazily, one per ``host:port``."""

    def __init__(self, options: ClientSettings) -> None:
        self._options = options
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._ready: set[str] = set()
        self._unary: dict[tuple[str, str], Any] = {}
        self._streams: dict[tuple[str, str], Any] = {}
        self._closed = False
        self._authority = ""
        size = options.max_message_size
        self._channel_args: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            *grpc_h2_args(options),
            *options.grpcio_channel_options,  # last: the user's raw channel args win
        ]
        # The gauge holds the transport weakly; one nobody closed unregisters when it is collected.
        self._unregister_gauge = pool_gauges.register_sizes_weakly(self)

    def pool_sizes(self) -> list[tuple[Mapping[str, str], int]]:
        """``({"address": ..., "transport": "grpc"}, 1)`` per address with a channel (the pool gauge)."""
        return pool_gauges.size_rows("grpc", self._channels)

    def _channel(self, address: str, authority: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            if self._closed:
                raise InternalError("client transport is closed")
            opts = self._options
            interceptors = list(opts.grpcio_interceptors) or None
            if opts.tls is None:
                # Kitex puts the destination service name in :authority (nphttp2/client_conn.go); a
                # channel serves one client, so one destination. Over TLS grpcio checks the server's
                # certificate against the authority, so there it stays the address's host.
                args = [("grpc.default_authority", authority), *self._channel_args] if authority else None
                channel = grpc.aio.insecure_channel(address, args or self._channel_args, None, interceptors)
            else:
                tls = opts.tls
                creds = grpc.ssl_channel_credentials(
                    tls.root_certificates, tls.private_key, tls.certificate_chain
                )
                args = list(self._channel_args)
                if tls.server_hostname:
                    args.append(("grpc.ssl_target_name_override", tls.server_hostname))
                channel = grpc.aio.secure_channel(address, creds, args, None, interceptors)
            self._channels[address] = channel
        return channel

    async def _connect(self, address: str, channel: grpc.aio.Channel, connect_timeout: float) -> None:
        """Wait for the channel to be ready within the connect timeout (Kitex's dial timeout).

        asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancellation that comes in
        the loop turn the channel becomes ready (python/cpython#86296; ruff's TID251 bans it here).
        """
        try:
            async with asyncio.timeout(connect_timeout):
                await channel.channel_ready()
        except TimeoutError:
            pool_gauges.count("grpc", address, pool_gauges.DIAL_FAILURE)
            detail = f"dial {address} timed out after {connect_timeout * 1000:.0f}ms"
            raise GetConnectionError(detail) from None
        pool_gauges.count("grpc", address, pool_gauges.DIAL)
        self._ready.add(address)

    def _metadata(self, ri: RPCInfo) -> tuple[tuple[str, str | bytes], ...]:
        return (*identity_headers(ri), *metainfo.to_http2_headers(), *ri.metadata)

    async def _multicallable(self, ri: RPCInfo, table: dict[tuple[str, str], Any], streaming: bool) -> Any:
        """The cached grpcio multicallable for this method on this instance, connecting first if needed."""
        address = ri.callee.address
        key = (address, ri.method.name)
        multicallable = table.get(key)
        if multicallable is not None and address in self._ready:
            pool_gauges.count("grpc", address, pool_gauges.REUSE)
            return multicallable
        self._authority = ri.callee.service_name
        channel = self._channel(address, self._authority)
        if address not in self._ready:
            await self._connect(address, channel, ri.config.connect_timeout)
        else:
            pool_gauges.count("grpc", address, pool_gauges.REUSE)
        if multicallable is None:
            method = ri.method
            make = channel.stream_stream if streaming else channel.unary_unary
            multicallable = make(
                ri.service.grpc_path(method.name),
                request_serializer=method.serialize_request,
                response_deserializer=method.deserialize_response,
            )
            table[key] = multicallable
        return multicallable

    async def unary(self, ri: RPCInfo, request: Any) -> Any:
        multicallable = await self._multicallable(ri, self._unary, streaming=False)
        call = multicallable(
            request,
            timeout=ri.time_remaining(),
            metadata=self._metadata(ri),
            compression=_COMPRESSION[ri.config.compression],
        )
        try:
            reply = await call
        except KeyError:
            raise await error_for_undefined_code(call) from None
        except grpc.aio.AioRpcError as exc:
            _record_metadata(ri, exc.initial_metadata(), exc.trailing_metadata())
            if exc.code() is grpc.StatusCode.UNAVAILABLE:
                address = ri.callee.address
                self._ready.discard(address)
                if self._never_sent(address, exc):
                    # As a failed dial on the other transports: the balancer re-picks (Kitex
                    # ErrGetConnection), since no server saw the request.
                    raise GetConnectionError(f"dial {address} failed: {exc.details()}") from None
            raise error_from_rpc_error(exc) from None
        _record_metadata(ri, await call.initial_metadata(), await call.trailing_metadata())
        return reply

    def _never_sent(self, address: str, exc: grpc.aio.AioRpcError) -> bool:
        """Whether an UNAVAILABLE call failed in grpcio's own connect, before any byte was sent.

        grpc core's pick_first policy fails a call it has no connection for with a status text that
        starts so, and the channel is then not READY. A live server's UNAVAILABLE (whatever its
        text) arrives on a READY channel, with the request sent: that one stays a
        RemoteOrNetworkError.
        """
        details = exc.details() or ""
        if not details.startswith(_CONNECT_FAILED) or exc.initial_metadata():
            return False
        channel = self._channels.get(address)
        return channel is not None and channel.get_state() is not grpc.ChannelConnectivity.READY

    async def open_stream(self, ri: RPCInfo) -> GrpcioClientStream:
        multicallable = await self._multicallable(ri, self._streams, streaming=True)
        call = multicallable(
            timeout=ri.time_remaining(),
            metadata=self._metadata(ri),
            compression=_COMPRESSION[ri.config.compression],
        )
        return GrpcioClientStream(call, ri)

    async def close_address(self, address: str) -> None:
        """Close the channel to ``address`` (an instance discovery removed); the next call reopens it."""
        channel = self._channels.pop(address, None)
        self._ready.discard(address)
        for cache in (self._unary, self._streams):
            for key in [k for k in cache if k[0] == address]:
                del cache[key]
        if channel is not None:
            await channel.close()

    async def preconnect(self, address: str, connect_timeout: float, conns: int | None = None) -> None:
        """Open the channel to ``address`` and wait until it is ready (warm-up).

        A channel multiplexes every call, so ``conns`` is not used.
        """
        # The destination is known from the first call; a channel warmed up before any call keeps
        # grpcio's own :authority (the address).
        await self._connect(address, self._channel(address, self._authority), connect_timeout)

    async def close(self) -> None:
        self._closed = True
        self._unregister_gauge()
        channels, self._channels = self._channels, {}
        self._unary.clear()
        self._streams.clear()
        for channel in channels.values():
            await channel.close()


def _record_metadata(ri: RPCInfo, headers: Any, trailers: Any) -> None:
    """Response headers and trailers, apart and (headers first) together in ``response_metadata``."""
    if headers:
        ri.response_headers.extend(headers)
    if trailers:
        ri.response_trailers.extend(trailers)
    ri.response_metadata = [*ri.response_headers, *ri.response_trailers]


class GrpcioClientStream:
    """A grpc.aio stream-stream call seen as a :class:`~kitex_grpc.streaming.StreamIO`.

    Response headers reach ``ri.response_headers`` with the first reply (or at the end of a call
    without one), trailers ``ri.response_trailers`` at the end.
    """

    __slots__ = ("_call", "_headers_done", "_ri", "_trailers_done")

    def __init__(self, call: _StreamCall, ri: RPCInfo) -> None:
        self._call = call
        self._ri = ri
        self._headers_done = False
        self._trailers_done = False

    async def _record_headers(self) -> None:
        if not self._headers_done:
            self._headers_done = True
            headers = await self._call.initial_metadata()
            if headers:
                self._ri.response_headers.extend(headers)

    async def _record_end(self) -> None:
        await self._record_headers()
        if not self._trailers_done:
            self._trailers_done = True
            _record_metadata(self._ri, (), await self._call.trailing_metadata())

    async def send(self, message: Any) -> None:
        try:
            await self._call.write(message)
        except grpc.aio.AioRpcError as exc:
            deadline = self._ri.deadline
            if (
                exc.code() is grpc.StatusCode.INTERNAL
                and deadline is not None
                and time.monotonic() >= deadline
            ):
                # grpcio 1.85 ends a call whose deadline passes during a write INTERNAL "Internal
                # error from Core" about once in 100 (1 ms deadline): it is the deadline.
                raise RPCTimeoutError(f"stream deadline exceeded during a write: {exc.details()}") from None
            raise error_from_rpc_error(exc) from None
        except asyncio.InvalidStateError:
            # The call already ended: surface its status rather than grpcio's state error.
            await self._raise_final_status()
            raise

    async def recv(self) -> Any:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            await self._record_end()
            raise error_from_rpc_error(exc) from None
        except KeyError:
            raise await error_for_undefined_code(self._call) from None
        except asyncio.CancelledError:
            # grpc.aio raises CancelledError from a call cancelled by anyone; only a cancellation of
            # this task may propagate as such, a cancelled call is a call error.
            task = asyncio.current_task()
            if (task is not None and task.cancelling()) or not self._call.cancelled():
                raise
            raise CanceledError("stream cancelled") from None
        if message is grpc.aio.EOF:
            await self._record_end()
            await self._raise_final_status()
            raise EOFError
        if not self._headers_done:
            await self._record_headers()
        return message

    async def _raise_final_status(self) -> None:
        try:
            code = await self._call.code()
        except KeyError:
            raise await error_for_undefined_code(self._call) from None
        if code is not grpc.StatusCode.OK:
            details = await self._call.details()
            trailers = await self._call.trailing_metadata()
            raise error_from_rpc_error(
                grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers or grpc.aio.Metadata(), details)
            )

    async def close_send(self) -> None:
        try:
            await self._call.done_writing()
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc_error(exc) from None

    def cancel(self) -> None:
        self._call.cancel()
