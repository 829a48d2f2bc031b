"""A gRPC server-reflection client: a server's services and their descriptors, for ``json_pb``.

It asks ``grpc.reflection.v1`` first and falls back to ``v1alpha`` when the server answers
UNIMPLEMENTED (grpcurl does the same), over one bidi stream per session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kitex_grpc.client import ClientOption, new_client
from kitex_grpc.errors import KitexError
from kitex_grpc.generic.codecs import PbGeneric, module_from_files
from kitex_grpc.generic.errors import ConvertError
from kitex_grpc.generic.pb_json import PbConvOptions
from kitex_grpc.reflection._proto import BUILT_V1, BUILT_V1ALPHA, V1, V1ALPHA
from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo, StreamingMode
from kitex_grpc.status import StatusCode

__all__ = ["ReflectionError", "ReflectionSession", "json_pb_from_reflection"]


class ReflectionError(Exception):
    """The server's reflection service answered with an error, or not at all."""


def _info(package: str, built: Any) -> ServiceInfo:
    request, response = built.messages["ServerReflectionRequest"], built.messages["ServerReflectionResponse"]
    method = MethodInfo("ServerReflectionInfo", StreamingMode.BIDIRECTIONAL, request, response)
    return ServiceInfo("ServerReflection", [method], package_name=package)


_VERSIONS = ((V1, _info(V1, BUILT_V1)), (V1ALPHA, _info(V1ALPHA, BUILT_V1ALPHA)))


class ReflectionSession:
    """One reflection conversation with a server (``async with``); ``version`` says which answered."""

    def __init__(self, address: str, *opts: ClientOption) -> None:
        self._address = address
        self._opts = opts
        self.version = ""
        self._client: Any = None
        self._stream: Any = None
        self._request: Any = None

    async def __aenter__(self) -> ReflectionSession:
        from kitex_grpc import client as _client

        last: BaseException | None = None
        for version, info in _VERSIONS:
            cli = new_client(info, "reflection", _client.with_host_ports(self._address), *self._opts)
            try:
                stream = await cli.bidi_stream("ServerReflectionInfo")
                request = info.methods["ServerReflectionInfo"].request_type
                await stream.send(request(list_services=""))
                first = await stream.recv()
            except KitexError as exc:
                await cli.close()
                last = exc
                if getattr(exc, "grpc_status", None) == StatusCode.UNIMPLEMENTED:
                    continue
                raise
            self.version, self._client, self._stream, self._request = version, cli, stream, request
            self._services = [s.name for s in first.list_services_response.service]
            return self
        raise ReflectionError(f"the server does not serve reflection (v1 or v1alpha): {last}")

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stream is not None:
            self._stream.cancel()
        if self._client is not None:
            await self._client.close()

    async def list_services(self) -> list[str]:
        """Full names of the services the server lists."""
        return list(self._services)

    async def _ask(self, **fields: Any) -> Any:
        await self._stream.send(self._request(**fields))
        response = await self._stream.recv()
        if response.WhichOneof("message_response") == "error_response":
            err = response.error_response
            raise ReflectionError(f"{err.error_message} (code {err.error_code})")
        return response

    async def files_for(self, symbol: str) -> list[Any]:
        """The FileDescriptorProtos of the file defining ``symbol``, with its dependencies."""
        from google.protobuf import descriptor_pb2

        files: dict[str, Any] = {}
        response = await self._ask(file_containing_symbol=symbol)
        for data in response.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(data)
            files.setdefault(fdp.name, fdp)
        missing = [d for f in list(files.values()) for d in f.dependency if d not in files]
        while missing:
            name = missing.pop()
            if name in files:
                continue
            response = await self._ask(file_by_filename=name)
            for data in response.file_descriptor_response.file_descriptor_proto:
                fdp = descriptor_pb2.FileDescriptorProto.FromString(data)
                if fdp.name not in files:
                    files[fdp.name] = fdp
                    missing.extend(d for d in fdp.dependency if d not in files)
        return list(files.values())


async def json_pb_from_reflection(
    address: str,
    service: str,
    *opts: ClientOption,
    int64_as_string: bool = False,
    allow_unknown_fields: bool = False,
    extra_symbols: Sequence[str] = (),
) -> PbGeneric:
    """A :func:`~kitex_grpc.generic.json_pb` generic of ``service`` (full name) from the server's
    reflection service; ``opts`` configure the reflection client (transport, TLS, timeouts)."""
    async with ReflectionSession(address, *opts) as session:
        files = await session.files_for(service)
        for symbol in extra_symbols:
            files.extend(await session.files_for(symbol))
    module = module_from_files(files)
    short = service.rpartition(".")[2]
    opts_ = PbConvOptions(int64_as_string=int64_as_string, allow_unknown_fields=allow_unknown_fields)
    try:
        return PbGeneric(module.service_info(short), opts_)
    except KeyError:
        raise ConvertError("", f"the server's descriptors have no service {service!r}") from None
