"""Load ``.proto`` files at run time: message classes and service infos without generated code.

::

    echo = kitex_grpc.protobuf.load("protos/echo/v1/echo.proto")
    cli = kitex_grpc.new_client(echo.service_info("Echo"), "echo", client.with_host_ports(addr))
    reply = await cli.call("Unary", echo.EchoRequest(message="hi"))

The twin of :func:`kitex_grpc.thrift.load`. protoc (from grpcio-tools) compiles the files once into a
descriptor set; the descriptors go into a private pool, so a loaded file never clashes with a
generated module of the same name in protobuf's default pool (their message classes are distinct).
The loader itself is :mod:`kitex_grpc.codec.protobuf_load` (lower layers use it from there).
"""

from __future__ import annotations

from kitex_grpc.codec.protobuf_load import ProtoModule, load

__all__ = ["ProtoModule", "load"]
