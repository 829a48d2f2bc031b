"""What the transports read of the client's and the server's configuration.

The option records (:class:`kitex_grpc.options.client.ClientOptions`,
:class:`kitex_grpc.options.server.ServerOptions`) are built a layer above the transports, from the
``with_*`` options. A transport names only the fields it reads, as the protocols here, so it never
imports the options layer (ARCHITECTURE.md, "Layers"); the records satisfy these protocols as they
are (mypy checks it where client/ and server/ hand them down). Each field means what the option that
sets it documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import socket
    import ssl

    from kitex_grpc.transport.ttheader.config import IdleConfig
    from kitex_grpc.transport_protocol import TransportProtocol

__all__ = ["ClientSettings", "GrpcSettings", "ServerSettings", "TLSSettings"]


class TLSSettings(Protocol):
    """TLS material (:class:`kitex_grpc.options.tls.TLSConfig`, set by ``with_tls``)."""

    @property
    def root_certificates(self) -> bytes | None: ...
    @property
    def certificate_chain(self) -> bytes | None: ...
    @property
    def private_key(self) -> bytes | None: ...
    @property
    def server_hostname(self) -> str | None: ...
    @property
    def require_client_auth(self) -> bool: ...

    def client_ssl_context(self, alpn: list[str]) -> ssl.SSLContext: ...

    def server_ssl_context(self, alpn: list[str]) -> ssl.SSLContext: ...


class GrpcSettings(Protocol):
    """The fields both sides share: the message limit, TLS and the ``with_grpc_*`` HTTP/2 knobs."""

    @property
    def transport_protocol(self) -> TransportProtocol: ...
    @property
    def max_message_size(self) -> int: ...
    @property
    def tls(self) -> TLSSettings | None: ...
    @property
    def grpcio_interceptors(self) -> tuple[Any, ...]: ...
    @property
    def grpc_initial_window_size(self) -> int | None: ...
    @property
    def grpc_initial_conn_window_size(self) -> int | None: ...
    @property
    def grpc_keepalive_time(self) -> float | None: ...
    @property
    def grpc_keepalive_timeout(self) -> float | None: ...
    @property
    def grpc_max_header_list_size(self) -> int | None: ...


class ClientSettings(GrpcSettings, Protocol):
    """What the client transports read (:class:`~kitex_grpc.options.client.ClientOptions`)."""

    @property
    def mux_connections(self) -> int: ...
    @property
    def long_connection(self) -> IdleConfig: ...
    @property
    def grpcio_channel_options(self) -> tuple[tuple[str, Any], ...]: ...


@runtime_checkable
class ServerSettings(GrpcSettings, Protocol):
    """What the server transports read (:class:`~kitex_grpc.options.server.ServerOptions`); settings
    that have all of these are a server's (``isinstance`` tells them from a client's)."""

    @property
    def service_addr(self) -> str: ...
    @property
    def listeners(self) -> tuple[socket.socket, ...]: ...
    @property
    def max_conn_idle_time(self) -> float: ...
    @property
    def read_write_timeout(self) -> float: ...
    @property
    def grpcio_server_options(self) -> tuple[tuple[str, Any], ...]: ...
    @property
    def grpc_max_concurrent_streams(self) -> int | None: ...
