"""Generic calls: clients and servers without generated code (Kitex ``pkg/generic``).

::

    from kitex_grpc import client, generic

    g = generic.json_thrift("idl/echo.thrift")                 # or map_thrift, json_pb, binary_*
    cli = generic.new_client(g, "echo", client.with_host_ports("127.0.0.1:8888"),
                             client.with_transport_protocol("ttheader"))
    reply = await cli.call("echo", '{"message": "hi"}')

    generic.register_service(svr, g, handler)                 # handler.call(method, json) -> json
    generic.register_unknown_handler(svr, handler)            # (service, method, bytes) -> bytes

The JSON mapping rules are Kitex's (KITEX-WIRE-2.md §13), with the differences listed in
:mod:`kitex_grpc.generic.thrift_json` and :mod:`kitex_grpc.generic.pb_json`.
"""

from __future__ import annotations

from kitex_grpc.generic.client import GenericClient, GenericStream, new_client
from kitex_grpc.generic.codecs import (
    Generic,
    IDLExceptionError,
    binary_pb,
    binary_thrift,
    json_pb,
    json_thrift,
    map_thrift,
)
from kitex_grpc.generic.errors import ConvertError
from kitex_grpc.generic.server import register_service, register_unknown_handler
from kitex_grpc.generic.thrift_idl import IDLError

__all__ = [
    "ConvertError",
    "Generic",
    "GenericClient",
    "GenericStream",
    "IDLError",
    "IDLExceptionError",
    "binary_pb",
    "binary_thrift",
    "json_pb",
    "json_thrift",
    "map_thrift",
    "new_client",
    "register_service",
    "register_unknown_handler",
]
