"""A small gRPC caller for discovery's own backends (etcd): the calls of one service, straight on a
client transport.

A discovery module may not import the client or options layers (ARCHITECTURE.md, "Layers"), so it
cannot make a :func:`kitex_grpc.new_client`. :class:`GrpcCaller` is what such a client amounts to
with only ``with_host_ports(*endpoints)``, ``with_connect_timeout`` and ``with_rpc_timeout`` set:

- the transport: the client's default one (``TransportProtocol.GRPC``, grpcio) with the client's
  default settings (:class:`CallerSettings`: 4 MiB messages, no TLS, grpcio's own keepalive); one
  channel per endpoint, made at the first call and reused by every call until :meth:`close`;
- per call, outermost first, as the client's chain without its optional slots: the RPC timeout
  (unary calls; a call made while serving one inherits what is left of that call's deadline, streams
  included, as every client call does), the discovery bridge over a static resolver of the endpoints
  (smooth weighted round robin, a re-pick after a failed connect), the mapping of stray network
  errors to :class:`~kitex_grpc.errors.RemoteOrNetworkError`, then the transport.

Messages are whatever the service info's methods serialize (a protobuf ``ServiceInfo``, e.g. from
:func:`kitex_grpc.codec.protobuf_load.load`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kitex_grpc.address import check_host_ports
from kitex_grpc.discovery.balancer import WeightedRoundRobinBalancer
from kitex_grpc.discovery.bridge import Discovery
from kitex_grpc.discovery.cache import CacheOptions
from kitex_grpc.discovery.static import StaticResolver
from kitex_grpc.endpoint import Endpoint, Middleware, chain
from kitex_grpc.errors import InternalError
from kitex_grpc.rpcinfo import EndpointInfo, RPCConfig, RPCInfo
from kitex_grpc.serviceinfo import StreamingMode, method_for_call
from kitex_grpc.streaming import BidiStreamCall, StreamArgs, StreamIO
from kitex_grpc.transport import new_client_transport
from kitex_grpc.transport.base import NETWORK_ERRORS_MAPPED, ClientTransport
from kitex_grpc.transport.call_middlewares import error_mapping_middleware, rpc_timeout_middleware
from kitex_grpc.transport.ttheader.config import DEFAULT_IDLE_CONFIG, IdleConfig
from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    from kitex_grpc.serviceinfo import ServiceInfo
    from kitex_grpc.transport.settings import ClientSettings, TLSSettings

__all__ = ["CallerSettings", "GrpcCaller"]


@dataclasses.dataclass(frozen=True, slots=True)
class CallerSettings:
    """What the transport reads (:class:`~kitex_grpc.transport.settings.ClientSettings`), at the
    defaults of :class:`kitex_grpc.options.client.ClientOptions` (a test keeps them equal)."""

    transport_protocol: TransportProtocol = TransportProtocol.GRPC
    max_message_size: int = 4 * 1024 * 1024  # grpc-go's default receive limit, as the client's
    tls: TLSSettings | None = None
    grpcio_interceptors: tuple[Any, ...] = ()
    grpcio_channel_options: tuple[tuple[str, Any], ...] = ()
    grpc_initial_window_size: int | None = None
    grpc_initial_conn_window_size: int | None = None
    grpc_keepalive_time: float | None = None
    grpc_keepalive_timeout: float | None = None
    grpc_max_header_list_size: int | None = None
    mux_connections: int = 0
    long_connection: IdleConfig = DEFAULT_IDLE_CONFIG


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"GrpcCaller: {name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class GrpcCaller:
    """Unary calls and bidirectional streams of ``service`` at ``endpoints`` (``host:port``, weight 10
    each), named ``dest_service`` (the ``:authority``) over one client transport.

    ``timeout`` bounds each unary call (``None`` or 0: no limit; streams have none of their own);
    ``connect_timeout`` each connection attempt.
    """

    def __init__(
        self,
        service: ServiceInfo,
        dest_service: str,
        endpoints: Sequence[str],
        *,
        timeout: float | None,
        connect_timeout: float,
        settings: ClientSettings = CallerSettings(),  # frozen: one shared default is safe
    ) -> None:
        check_host_ports("GrpcCaller", list(endpoints))
        rpc_timeout = None if timeout is None else (_seconds("timeout", timeout) or None)
        connect = _seconds("connect_timeout", connect_timeout)
        if connect == 0:
            raise ValueError("GrpcCaller: connect_timeout must be > 0")
        self._service = service
        self._caller = EndpointInfo()
        self._dest = dest_service
        protocol = settings.transport_protocol
        self._unary_config = RPCConfig(rpc_timeout, connect, protocol, None, rpc_timeout is not None)
        self._stream_config = RPCConfig(None, connect, protocol, None, False)
        self._transport: ClientTransport = new_client_transport(settings, service.payload_codec)
        self._discovery = Discovery(
            StaticResolver(endpoints), WeightedRoundRobinBalancer(), CacheOptions(), self._transport
        )
        mapped = getattr(self._transport, NETWORK_ERRORS_MAPPED, False) is True
        middlewares: list[Middleware] = [rpc_timeout_middleware, self._discovery.middleware]
        if not mapped:
            middlewares.append(error_mapping_middleware)
        self._unary: Endpoint = chain(middlewares, self._transport.unary)
        self._stream: Endpoint = chain(middlewares, self._open_stream)
        self._closed = False

    def _rpcinfo(self, name: str, modes: tuple[StreamingMode, ...]) -> RPCInfo:
        mi = method_for_call(self._service, name, modes)
        if self._closed:
            raise InternalError("client is closed")
        config = self._stream_config if mi.mode.is_streaming else self._unary_config
        return RPCInfo(self._caller, EndpointInfo(self._dest, mi.name), self._service, mi, config)

    async def call(self, method: str, request: Any) -> Any:
        """Make the unary call ``method`` and return the reply."""
        return await self._unary(self._rpcinfo(method, (StreamingMode.UNARY,)), request)

    async def bidi_stream(self, method: str) -> BidiStreamCall[Any, Any]:
        """Open the bidirectional stream ``method``; cancel it (or let it end) when done."""
        ri = self._rpcinfo(method, (StreamingMode.BIDIRECTIONAL,))
        try:
            io: StreamIO = await self._stream(ri, StreamArgs())
        except BaseException as exc:
            ri.stats.finish(exc)
            raise
        return BidiStreamCall(ri, io)

    async def _open_stream(self, ri: RPCInfo, _args: StreamArgs) -> StreamIO:
        return await self._transport.open_stream(ri)

    async def close(self) -> None:
        """Close the connections; calls made afterwards fail with InternalError."""
        if not self._closed:
            self._closed = True
            await self._discovery.close()
            await self._transport.close()
