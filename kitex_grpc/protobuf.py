"""Load ``.proto`` files at run time: message classes and service infos without generated code.

::

    echo = kitex_grpc.protobuf.load("protos/echo/v1/echo.proto")
    cli = kitex_grpc.new_client(echo.service_info("Echo"), "echo", client.with_host_ports(addr))
    reply = await cli.call("Unary", echo.EchoRequest(message="hi"))

The twin of :func:`kitex_grpc.thrift.load`. protoc (from grpcio-tools) compiles the files once into a
descriptor set; the descriptors go into a private pool, so a loaded file never clashes with a
generated module of the same name in protobuf's default pool (their message classes are distinct).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo, StreamingMode

__all__ = ["ProtoModule", "load"]


class ProtoModule:
    """The messages and services of loaded ``.proto`` files.

    Messages of the loaded files' packages are attributes by short name (``mod.EchoRequest``); any
    message, nested or imported, is found by full name with :meth:`message`.
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool, files: Sequence[str]) -> None:
        self._pool = pool
        self._short: dict[str, type[Message]] = {}
        self._services: dict[str, ServiceInfo] = {}
        for name in files:
            fd = pool.FindFileByName(name)
            for msg in fd.message_types_by_name.values():
                self._short.setdefault(msg.name, message_factory.GetMessageClass(msg))
            for svc in fd.services_by_name.values():
                self._services[svc.name] = self._service_info(svc)

    def message(self, full_name: str) -> type[Message]:
        """The message class named ``package.Message`` (or ``package.Outer.Inner``)."""
        return message_factory.GetMessageClass(self._pool.FindMessageTypeByName(full_name))

    def service_info(self, name: str) -> ServiceInfo:
        """The service info of the service ``name`` (short name, as declared)."""
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(f"no service {name!r}; loaded services: {sorted(self._services)}") from None

    @property
    def services(self) -> dict[str, ServiceInfo]:
        return dict(self._services)

    def __getattr__(self, name: str) -> Any:
        # Any, not type[Message]: the fields of a message loaded at run time are unknown to a type
        # checker, and typeshed's Message.__init__ takes no keyword arguments (types-protobuf >= 6).
        try:
            return self._short[name]
        except KeyError:
            raise AttributeError(f"no message {name!r} in the loaded files") from None

    @staticmethod
    def _service_info(svc: Any) -> ServiceInfo:
        methods = []
        for m in svc.methods:
            mode = StreamingMode.from_flags(m.client_streaming, m.server_streaming)
            request = message_factory.GetMessageClass(m.input_type)
            response = message_factory.GetMessageClass(m.output_type)
            methods.append(MethodInfo(m.name, mode, request, response))
        return ServiceInfo(
            svc.name, methods, package_name=svc.file.package, payload_codec=PayloadCodec.PROTOBUF
        )


def load(path: str | Path, *more: str | Path, include: Sequence[str | Path] = ()) -> ProtoModule:
    """Compile ``.proto`` files with protoc and load them into a private descriptor pool.

    ``include`` sets the import roots; by default each file's root is inferred from its ``package``
    (as ``kitex-grpc gen`` does). Raises :class:`kitex_grpc.codegen.CodegenError` when protoc fails.
    """
    from kitex_grpc.codegen.generator import compile_descriptor_set  # protoc only when loading

    descriptor_set, names = compile_descriptor_set([path, *more], include)
    pool = descriptor_pool.DescriptorPool()
    for fd in descriptor_set.file:  # --include_imports lists dependencies first
        pool.Add(fd)
    return ProtoModule(pool, names)
