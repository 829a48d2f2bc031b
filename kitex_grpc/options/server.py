"""Server options: ``with_*`` functions folded into a frozen :class:`ServerOptions`.

Defaults follow Kitex (KITEX-WIRE.md §4.2): listen on ``:8888``, 5 s exit wait time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from kitex_grpc.endpoint import Middleware
from kitex_grpc.options._base import (
    Option,
    OptionRecord,
    appender,
    callables_appender,
    check_duration,
    check_positive_int,
    setter,
)
from kitex_grpc.options.address import parse_address
from kitex_grpc.options.client import DEFAULT_MAX_MESSAGE_SIZE
from kitex_grpc.options.tls import TLSConfig
from kitex_grpc.streaming import RecvMiddleware, SendMiddleware
from kitex_grpc.transport_protocol import TransportProtocol

DEFAULT_SERVICE_ADDR = ":8888"
DEFAULT_EXIT_WAIT_TIME = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class ServerOptions:
    """The effective server configuration. Build it with ``with_*`` options, not directly."""

    service_name: str = ""
    service_addr: str = DEFAULT_SERVICE_ADDR
    transport_protocol: TransportProtocol = TransportProtocol.GRPC
    middlewares: tuple[Middleware, ...] = ()
    stream_send_middlewares: tuple[SendMiddleware, ...] = ()
    stream_recv_middlewares: tuple[RecvMiddleware, ...] = ()
    exit_wait_time: float = DEFAULT_EXIT_WAIT_TIME
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    tls: TLSConfig | None = None
    grpcio_interceptors: tuple[Any, ...] = ()
    grpcio_server_options: tuple[tuple[str, Any], ...] = ()
    records: tuple[OptionRecord, ...] = ()


ServerOption = Option[ServerOptions]


def with_server_basic_info(service_name: str) -> ServerOption:
    """Name this service (the callee's service name in RPCInfo)."""
    return setter("with_server_basic_info", "service_name", service_name)


def with_service_addr(address: str) -> ServerOption:
    """Listen on ``host:port`` (port 0 picks a free port; default ``:8888``)."""
    parse_address("with_service_addr", address, allow_port_zero=True)
    return setter("with_service_addr", "service_addr", address)


def with_transport_protocol(protocol: TransportProtocol | str) -> ServerOption:
    """Choose the transport the server speaks: ``GRPC`` (grpcio, default) or ``GRPC_H2``, ...."""
    try:
        parsed = TransportProtocol.parse(protocol)
    except ValueError as exc:
        raise ValueError(f"with_transport_protocol: {exc}") from None
    return setter("with_transport_protocol", "transport_protocol", parsed)


def with_middleware(*middlewares: Middleware) -> ServerOption:
    """Add middlewares; they run in option order, inside the timeout and outside ACL and the handler."""
    return callables_appender("with_middleware", "middlewares", middlewares)


def with_stream_send_middleware(*middlewares: SendMiddleware) -> ServerOption:
    """Add middlewares that see every message a handler's stream sends."""
    return callables_appender("with_stream_send_middleware", "stream_send_middlewares", middlewares)


def with_stream_recv_middleware(*middlewares: RecvMiddleware) -> ServerOption:
    """Add middlewares that see every message a handler's stream receives."""
    return callables_appender("with_stream_recv_middleware", "stream_recv_middlewares", middlewares)


def with_exit_wait_time(seconds: float) -> ServerOption:
    """How long ``stop()`` lets in-flight calls finish before closing (Kitex default 5 s)."""
    check_duration("with_exit_wait_time", seconds)
    return setter("with_exit_wait_time", "exit_wait_time", float(seconds))


def with_max_message_size(size: int) -> ServerOption:
    """Largest message, in bytes, the server accepts or sends (default 4 MiB)."""
    check_positive_int("with_max_message_size", size)
    return setter("with_max_message_size", "max_message_size", size)


def with_tls(
    certificate_chain: bytes,
    private_key: bytes,
    root_certificates: bytes | None = None,
    require_client_auth: bool = False,
) -> ServerOption:
    """Serve TLS with this PEM key pair; ``root_certificates`` + ``require_client_auth`` for mTLS."""
    config = TLSConfig(root_certificates, certificate_chain, private_key, None, require_client_auth)
    config.validate_for_server("with_tls")
    return setter("with_tls", "tls", config)


def with_grpcio_interceptors(*interceptors: Any) -> ServerOption:
    """Attach plain ``grpc.aio`` server interceptors (grpcio transport only)."""
    return appender("with_grpcio_interceptors", "grpcio_interceptors", interceptors)


def with_grpcio_server_options(options: Sequence[tuple[str, Any]]) -> ServerOption:
    """Pass raw grpcio server arguments (grpcio transport only)."""
    return appender("with_grpcio_server_options", "grpcio_server_options", tuple(options))
