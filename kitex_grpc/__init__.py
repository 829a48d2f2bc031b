"""kitex-grpc: a Kitex-style RPC framework for Python.

::

    import kitex_grpc
    from kitex_grpc import client, server, callopt, metainfo, TransportProtocol

    cli = kitex_grpc.new_client(service_info, "echo", client.with_host_ports("127.0.0.1:8888"))
    reply = await cli.call("Unary", request, callopt.with_rpc_timeout(0.5))

The names exported here are the public API; a test locks the list.
"""

from __future__ import annotations

from kitex_grpc import callopt, client, errors, grpc_meta, metainfo, protobuf, rpcinfo, server
from kitex_grpc._version import __version__
from kitex_grpc.client import Client, new_client
from kitex_grpc.endpoint import Endpoint, Middleware
from kitex_grpc.errors import BizStatusError, KitexError, RPCTimeoutError, StatusError
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.server import Server, new_server
from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo, StreamingMode
from kitex_grpc.status import StatusCode
from kitex_grpc.transport_protocol import TransportProtocol

__all__ = [
    "BizStatusError",
    "Client",
    "Endpoint",
    "KitexError",
    "MethodInfo",
    "Middleware",
    "PayloadCodec",
    "RPCInfo",
    "RPCTimeoutError",
    "Server",
    "ServiceInfo",
    "StatusCode",
    "StatusError",
    "StreamingMode",
    "TransportProtocol",
    "__version__",
    "callopt",
    "client",
    "errors",
    "grpc_meta",
    "metainfo",
    "new_client",
    "new_server",
    "protobuf",
    "rpcinfo",
    "server",
]
