"""Transports, chosen by :class:`~kitex_grpc.TransportProtocol`.

Each transport module is imported only when it is used, so a process that never speaks grpcio
never loads its C core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    from kitex_grpc.options.client import ClientOptions
    from kitex_grpc.options.server import ServerOptions
    from kitex_grpc.transport.base import CallDispatcher, ClientTransport, ServerTransport


def new_client_transport(options: ClientOptions) -> ClientTransport:
    protocol = options.transport_protocol
    if protocol is TransportProtocol.GRPC:
        from kitex_grpc.transport.grpcio.client import GrpcioClientTransport

        return GrpcioClientTransport(options)
    raise ValueError(
        f"with_transport_protocol: the {protocol.name} client transport is not available in this build"
    )


def new_server_transport(options: ServerOptions, dispatcher: CallDispatcher) -> ServerTransport:
    protocol = options.transport_protocol
    if protocol is TransportProtocol.GRPC:
        from kitex_grpc.transport.grpcio.server import GrpcioServerTransport

        return GrpcioServerTransport(options, dispatcher)
    raise ValueError(
        f"with_transport_protocol: the {protocol.name} server transport is not available in this build"
    )
