"""Small builders shared by the observability tests."""

from __future__ import annotations

from gen.echo.v1 import echo_kitex
from kitex_grpc.rpcinfo import EndpointInfo, RPCConfig, RPCInfo
from kitex_grpc.transport_protocol import TransportProtocol


def fake_rpcinfo(method: str = "Unary") -> RPCInfo:
    service = echo_kitex.ECHO_SERVICE_INFO
    return RPCInfo(
        EndpointInfo("caller"),
        EndpointInfo("echo", method, "127.0.0.1:1"),
        service,
        service.methods[method],
        RPCConfig(None, 0.05, TransportProtocol.GRPC),
    )
