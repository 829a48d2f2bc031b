"""kitex-grpc: a Kitex-style RPC framework for Python.

::

    import kitex_grpc
    from kitex_grpc import client, server, callopt, metainfo, TransportProtocol

    cli = kitex_grpc.new_client(service_info, "echo", client.with_host_ports("127.0.0.1:8888"))
    reply = await cli.call("Unary", request, callopt.with_rpc_timeout(0.5))

The names exported here are the public API; a test locks the list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kitex_grpc._version import __version__

if TYPE_CHECKING:
    from kitex_grpc import callopt, client, errors, grpc_meta, metainfo, protobuf, rpcinfo, server
    from kitex_grpc.client import Client, new_client
    from kitex_grpc.endpoint import Endpoint, Middleware
    from kitex_grpc.errors import BizStatusError, KitexError, RPCTimeoutError, StatusError
    from kitex_grpc.rpcinfo import RPCInfo
    from kitex_grpc.server import Server, new_server
    from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo, StreamingMode
    from kitex_grpc.status import StatusCode
    from kitex_grpc.transport_protocol import TransportProtocol

# Imported on first use (PEP 562), so that ``import kitex_grpc.cli`` (``kitex-grpc --help``) does not
# load grpcio, protobuf and every transport: name -> (module, attribute or "" for the module itself).
_LAZY = {
    "callopt": ("kitex_grpc.callopt", ""),
    "client": ("kitex_grpc.client", ""),
    "errors": ("kitex_grpc.errors", ""),
    "grpc_meta": ("kitex_grpc.grpc_meta", ""),
    "metainfo": ("kitex_grpc.metainfo", ""),
    "protobuf": ("kitex_grpc.protobuf", ""),
    "rpcinfo": ("kitex_grpc.rpcinfo", ""),
    "server": ("kitex_grpc.server", ""),
    "Client": ("kitex_grpc.client", "Client"),
    "new_client": ("kitex_grpc.client", "new_client"),
    "Endpoint": ("kitex_grpc.endpoint", "Endpoint"),
    "Middleware": ("kitex_grpc.endpoint", "Middleware"),
    "BizStatusError": ("kitex_grpc.errors", "BizStatusError"),
    "KitexError": ("kitex_grpc.errors", "KitexError"),
    "RPCTimeoutError": ("kitex_grpc.errors", "RPCTimeoutError"),
    "StatusError": ("kitex_grpc.errors", "StatusError"),
    "RPCInfo": ("kitex_grpc.rpcinfo", "RPCInfo"),
    "Server": ("kitex_grpc.server", "Server"),
    "new_server": ("kitex_grpc.server", "new_server"),
    "MethodInfo": ("kitex_grpc.serviceinfo", "MethodInfo"),
    "PayloadCodec": ("kitex_grpc.serviceinfo", "PayloadCodec"),
    "ServiceInfo": ("kitex_grpc.serviceinfo", "ServiceInfo"),
    "StreamingMode": ("kitex_grpc.serviceinfo", "StreamingMode"),
    "StatusCode": ("kitex_grpc.status", "StatusCode"),
    "TransportProtocol": ("kitex_grpc.transport_protocol", "TransportProtocol"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'kitex_grpc' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
