"""The gRPC server reflection service (``grpc.reflection.v1`` and ``v1alpha``).

One registered service answers both versions: kitex-grpc servers look services up by name and
ignore the package, as Kitex does, and the two versions are byte-for-byte the same messages, so
``/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo`` reaches the same handler as v1.

Answers come from the protobuf descriptors of the registered services (each service's messages know
their descriptor pool): ``list_services``, ``file_by_filename``, ``file_containing_symbol``,
``file_containing_extension`` and ``all_extension_numbers_of_type``. A file is sent together with
its transitive dependencies. Services without protobuf descriptors (Thrift) are not listed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from kitex_grpc.observability.lifecycle import ServerHook
from kitex_grpc.reflection._proto import BUILT_V1, BUILT_V1ALPHA, V1, V1ALPHA
from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo, StreamingMode
from kitex_grpc.status import StatusCode

__all__ = ["REFLECTION_SERVICE_INFO", "ReflectionHook", "ReflectionServer"]

_Request = BUILT_V1.messages["ServerReflectionRequest"]
_Response = BUILT_V1.messages["ServerReflectionResponse"]

REFLECTION_SERVICE_INFO = ServiceInfo(
    "ServerReflection",
    (MethodInfo("ServerReflectionInfo", StreamingMode.BIDIRECTIONAL, _Request, _Response),),
    package_name=V1,
)
_REFLECTION_NAMES = (f"{V1}.ServerReflection", f"{V1ALPHA}.ServerReflection")


def _service_pool(service: ServiceInfo) -> Any | None:
    """The descriptor pool that defines ``service``, found through its message types."""
    if service.payload_codec is not PayloadCodec.PROTOBUF:
        return None
    for method in service.methods.values():
        for message_type in (method.request_type, method.response_type):
            descriptor = getattr(message_type, "DESCRIPTOR", None)
            pool = getattr(getattr(descriptor, "file", None), "pool", None)
            if pool is None:
                continue
            try:
                pool.FindServiceByName(service.full_name)
            except KeyError:
                continue
            return pool
    return None


class ReflectionServer:
    """Answers reflection requests about the services registered on ``server``."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def _catalogue(self) -> tuple[list[str], list[Any]]:
        names: list[str] = []
        pools: list[Any] = []
        for service in self._server.services:
            pool = _service_pool(service)
            if pool is None:
                continue
            if service.full_name in _REFLECTION_NAMES:
                continue
            names.append(service.full_name)
            if all(pool is not p for p in pools):
                pools.append(pool)
        names.extend(_REFLECTION_NAMES)
        pools.extend((BUILT_V1.pool, BUILT_V1ALPHA.pool))
        return sorted(names), pools

    def answer(self, request: Any) -> Any:
        """The response to one request (also usable without a stream, e.g. in tests)."""
        response = _Response(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        names, pools = self._catalogue()
        if kind == "list_services":
            for name in names:
                response.list_services_response.service.add(name=name)
        elif kind == "file_by_filename":
            self._files(response, pools, lambda pool: pool.FindFileByName(request.file_by_filename))
        elif kind == "file_containing_symbol":
            symbol = request.file_containing_symbol
            self._files(response, pools, lambda pool: pool.FindFileContainingSymbol(symbol))
        elif kind == "file_containing_extension":
            ext = request.file_containing_extension
            self._files(
                response,
                pools,
                lambda pool: (
                    pool.FindExtensionByNumber(
                        pool.FindMessageTypeByName(ext.containing_type), ext.extension_number
                    ).file
                ),
            )
        elif kind == "all_extension_numbers_of_type":
            self._extension_numbers(response, pools, request.all_extension_numbers_of_type)
        else:
            _error(response, StatusCode.UNIMPLEMENTED, f"unsupported request {kind!r}")
        return response

    def _files(self, response: Any, pools: Iterable[Any], find: Any) -> None:
        for pool in pools:
            try:
                found = find(pool)
            except (KeyError, TypeError):
                continue
            out = response.file_descriptor_response.file_descriptor_proto
            for file in _with_dependencies(found):
                out.append(file.serialized_pb)
            return
        _error(response, StatusCode.NOT_FOUND, "not found")

    def _extension_numbers(self, response: Any, pools: Iterable[Any], type_name: str) -> None:
        for pool in pools:
            try:
                message = pool.FindMessageTypeByName(type_name)
            except KeyError:
                continue
            result = response.all_extension_numbers_response
            result.base_type_name = type_name
            result.extension_number.extend(sorted(e.number for e in pool.FindAllExtensions(message)))
            return
        _error(response, StatusCode.NOT_FOUND, f"type {type_name!r} not found")

    async def ServerReflectionInfo(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            yield self.answer(request)


def _with_dependencies(file: Any) -> list[Any]:
    """``file`` first, then its transitive dependencies, each once."""
    seen: dict[str, Any] = {}
    stack = [file]
    while stack:
        current = stack.pop()
        if current.name in seen:
            continue
        seen[current.name] = current
        stack.extend(reversed(current.dependencies))
    return list(seen.values())


def _error(response: Any, code: StatusCode, message: str) -> None:
    response.error_response.error_code = int(code)
    response.error_response.error_message = message


class ReflectionHook(ServerHook):
    """Registers the reflection service on the server (``server.with_reflection()``)."""

    async def prepare(self, server: Any) -> None:
        if not any(s.service_name == "ServerReflection" for s in server.services):
            server.register_service(REFLECTION_SERVICE_INFO, ReflectionServer(server))

    def __repr__(self) -> str:
        return "ReflectionHook()"
