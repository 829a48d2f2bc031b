"""Build small proto3 files in code, in a private descriptor pool.

kitex-grpc serves grpc.health.v1 and grpc.reflection.* without generated ``_pb2`` modules: the
descriptors are written here as data, turned into a ``FileDescriptorProto``, added to a pool of their
own and given message classes with ``message_factory.GetMessageClass``. Generated modules would tie
the package to the protobuf version that generated them (newer protoc output refuses older
runtimes), and a private pool cannot clash with another copy of these well-known files in the
default pool (grpcio-health-checking's, or one a user generates). The ``.proto`` sources under
``protos/grpc/`` are the reference; a test checks that protoc produces the same descriptors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _FDP.TYPE_STRING,
    "bytes": _FDP.TYPE_BYTES,
    "int32": _FDP.TYPE_INT32,
}

# A field: (name, number, type, repeated, oneof). ``type`` is a scalar name, or ".pkg.Message" /
# "enum:.pkg.Message.Enum" for message and enum types; ``oneof`` names the oneof it belongs to.
Field = tuple[str, int, str, bool, str | None]
# A message: (name, fields, nested enums as (name, [(value_name, number), ...])).
Message = tuple[str, Sequence[Field], Sequence[tuple[str, Sequence[tuple[str, int]]]]]
# A method: (name, input type, output type, client streaming, server streaming).
Method = tuple[str, str, str, bool, bool]


def file_proto(
    name: str, package: str, messages: Sequence[Message], service: str, methods: Sequence[Method]
) -> descriptor_pb2.FileDescriptorProto:
    """A proto3 ``FileDescriptorProto`` for one file with one service."""
    fdp = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    for msg_name, fields, enums in messages:
        msg = fdp.message_type.add(name=msg_name)
        for enum_name, values in enums:
            enum = msg.enum_type.add(name=enum_name)
            for value_name, number in values:
                enum.value.add(name=value_name, number=number)
        oneofs: list[str] = []
        for field_name, number, type_name, repeated, oneof in fields:
            field = msg.field.add(name=field_name, number=number)
            field.label = _FDP.LABEL_REPEATED if repeated else _FDP.LABEL_OPTIONAL
            if type_name in _SCALARS:
                field.type = _SCALARS[type_name]
            elif type_name.startswith("enum:"):
                field.type = _FDP.TYPE_ENUM
                field.type_name = type_name[len("enum:") :]
            else:
                field.type = _FDP.TYPE_MESSAGE
                field.type_name = type_name
            if oneof is not None:
                if oneof not in oneofs:
                    oneofs.append(oneof)
                    msg.oneof_decl.add(name=oneof)
                field.oneof_index = oneofs.index(oneof)
    svc = fdp.service.add(name=service)
    for method_name, input_type, output_type, client_streaming, server_streaming in methods:
        method = svc.method.add(name=method_name, input_type=input_type, output_type=output_type)
        if client_streaming:
            method.client_streaming = True
        if server_streaming:
            method.server_streaming = True
    return fdp


class BuiltFile:
    """A file added to its own pool: its descriptor and message classes by short name."""

    def __init__(self, fdp: descriptor_pb2.FileDescriptorProto, pool: Any | None = None) -> None:
        self.pool = pool if pool is not None else descriptor_pool.DescriptorPool()
        self.file = self.pool.AddSerializedFile(fdp.SerializeToString())
        self.proto = fdp
        self.messages: dict[str, Any] = {
            msg.name: message_factory.GetMessageClass(
                self.pool.FindMessageTypeByName(f"{fdp.package}.{msg.name}")
            )
            for msg in fdp.message_type
        }
