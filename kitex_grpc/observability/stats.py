"""What observers read from a finished call: its status, peer, side and protocol family.

These helpers turn an :class:`~kitex_grpc.rpcinfo.RPCInfo` into the plain facts that tracers, metrics
and the access log report, so all three agree on them.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from kitex_grpc.errors import KitexError
from kitex_grpc.serviceinfo import PayloadCodec
from kitex_grpc.status import StatusCode
from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

__all__ = ["rpc_system", "split_host_port", "status_of"]

_GRPC_TRANSPORTS = (TransportProtocol.GRPC, TransportProtocol.GRPC_H2)


def status_of(error: BaseException | None, ri: RPCInfo | None = None) -> StatusCode:
    """The gRPC status a call ended with: OK, the error's own status, CANCELLED, or UNKNOWN.

    A cancellation after ``ri``'s deadline has passed (an attempt cut short by the RPC timeout)
    counts as DEADLINE_EXCEEDED.
    """
    if error is None:
        return StatusCode.OK
    if isinstance(error, KitexError):
        return error.grpc_status
    if isinstance(error, asyncio.CancelledError):
        if ri is not None and ri.deadline is not None and time.monotonic() >= ri.deadline:
            return StatusCode.DEADLINE_EXCEEDED
        return StatusCode.CANCELLED
    if isinstance(error, TimeoutError):
        return StatusCode.DEADLINE_EXCEEDED
    return StatusCode.UNKNOWN


def rpc_system(ri: RPCInfo) -> str:
    """OpenTelemetry ``rpc.system``: ``grpc`` over HTTP/2, ``apache_thrift`` for Thrift, else ``kitex``."""
    if ri.config.transport_protocol in _GRPC_TRANSPORTS:
        return "grpc"
    if ri.service.payload_codec is PayloadCodec.THRIFT:
        return "apache_thrift"
    return "kitex"  # Kitex Protobuf over TTHeader/Framed


def split_host_port(address: str) -> tuple[str, int | None]:
    """``host:port`` (``[v6]:port`` too) as ``(host, port)``; ``(address, None)`` if there is no port."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return address, None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
