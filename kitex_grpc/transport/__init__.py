"""Transports, chosen by :class:`~kitex_grpc.TransportProtocol`.

Each transport module is imported only when it is used, so a process that never speaks grpcio
never loads its C core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kitex_grpc.serviceinfo import PayloadCodec
from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    from kitex_grpc.transport.base import CallDispatcher, ClientTransport, ServerTransport
    from kitex_grpc.transport.settings import ClientSettings, ServerSettings

_TTHEADER_FAMILY = (TransportProtocol.TTHEADER, TransportProtocol.TTHEADER_FRAMED, TransportProtocol.FRAMED)


def new_client_transport(
    options: ClientSettings, payload_codec: PayloadCodec = PayloadCodec.PROTOBUF
) -> ClientTransport:
    """The client transport of ``options.transport_protocol`` for a service of ``payload_codec``.

    ``GRPC`` with Thrift payloads gets the pure-Python HTTP/2 transport (``GRPC_H2``): gRPC with a
    Thrift payload must say ``content-type: application/grpc+thrift``, since Kitex's server picks the
    payload codec from that subtype alone (KITEX-WIRE-2.md §12), and grpc-core writes
    ``application/grpc`` whatever content-type a call's metadata names. The grpcio-only options
    (``with_grpcio_interceptor``, ``with_grpcio_channel_options``) do not apply to such a client.
    """
    protocol = options.transport_protocol
    if protocol is TransportProtocol.GRPC and payload_codec is PayloadCodec.THRIFT:
        protocol = TransportProtocol.GRPC_H2
    if options.mux_connections and protocol not in (
        TransportProtocol.TTHEADER,
        TransportProtocol.TTHEADER_FRAMED,
    ):
        raise ValueError(
            f"with_mux_connection: multiplexing needs a TTHeader transport (replies are matched by the "
            f"header's seq id); add with_transport_protocol(TransportProtocol.TTHEADER), not {protocol.name}"
        )
    if protocol is TransportProtocol.GRPC:
        from kitex_grpc.transport.grpcio.client import GrpcioClientTransport

        return GrpcioClientTransport(options)
    if protocol is TransportProtocol.GRPC_H2:
        from kitex_grpc.transport.h2.client import H2ClientTransport

        return H2ClientTransport(options)
    if protocol is TransportProtocol.TTHEADER_STREAMING:
        from kitex_grpc.transport.ttstream.client import TTStreamClientTransport

        return TTStreamClientTransport(options)
    if protocol in _TTHEADER_FAMILY:
        from kitex_grpc.transport.ttheader.client import TTHeaderClientTransport

        return TTHeaderClientTransport(options)
    raise ValueError(
        f"with_transport_protocol: the {protocol.name} client transport is not available in this build"
    )


def new_server_transport(options: ServerSettings, dispatcher: CallDispatcher) -> ServerTransport:
    protocol = options.transport_protocol
    if protocol is TransportProtocol.GRPC:
        from kitex_grpc.transport.grpcio.server import GrpcioServerTransport

        return GrpcioServerTransport(options, dispatcher)
    if protocol is TransportProtocol.GRPC_H2:
        from kitex_grpc.transport.h2.server import H2ServerTransport

        return H2ServerTransport(options, dispatcher)
    if protocol in _TTHEADER_FAMILY or protocol is TransportProtocol.TTHEADER_STREAMING:
        # One port serves all (Buffered, Kitex Protobuf, HTTP/2 and ttstream too): per-connection detection.
        from kitex_grpc.transport.ttheader.server import TTHeaderServerTransport

        return TTHeaderServerTransport(options, dispatcher)
    raise ValueError(
        f"with_transport_protocol: the {protocol.name} server transport is not available in this build"
    )
