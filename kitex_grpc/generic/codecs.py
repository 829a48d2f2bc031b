"""The generic payload kinds (Kitex ``pkg/generic``): what a generic call passes and gets back.

Each :class:`Generic` has a typed :class:`~kitex_grpc.serviceinfo.ServiceInfo` that the ordinary
client and server chains run with, and converts between what users pass (JSON text, Python dicts,
bytes) and the typed values of that service info, on both sides:

=====================  ==============================  ===========================================
kind                   request / reply                 payload
=====================  ==============================  ===========================================
:func:`json_thrift`    JSON text of the first argument Thrift (args / result structs)
                       / of the success value
:func:`map_thrift`     a dict (or value) / the same    Thrift
:func:`json_pb`        JSON text / JSON text           protobuf message (one per stream message)
:func:`binary_thrift`  Args struct bytes / Result      Thrift (Kitex ``BinaryThriftGenericV2``)
                       struct bytes
:func:`binary_pb`      message bytes / message bytes   protobuf (Kitex ``BinaryPbGeneric``)
=====================  ==============================  ===========================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kitex_grpc.generic.errors import ConvertError
from kitex_grpc.generic.pb_json import PbConvOptions, message_from_json, message_to_json
from kitex_grpc.generic.thrift_idl import ThriftIDL, load_idl
from kitex_grpc.generic.thrift_json import (
    DICT_OPTIONS,
    STRING,
    STRUCT,
    ThriftConvOptions,
    from_json,
    struct_from_json,
    to_json,
)
from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo, StreamingMode

__all__ = [
    "Generic",
    "IDLExceptionError",
    "binary_pb",
    "binary_thrift",
    "dump_json",
    "json_pb",
    "json_thrift",
    "map_thrift",
]


class IDLExceptionError(Exception):
    """An IDL-declared Thrift exception, generically: ``field`` (its name in ``throws``), ``type_name``
    and ``value`` (JSON text for JSON generics, a dict for the map generic).

    A generic client raises it for a declared exception in the reply (Kitex gives a Go ``%#v`` string
    instead); a generic server handler raises it to send one (Kitex's generic server cannot).
    """

    def __init__(self, field: str, value: Any, type_name: str = "") -> None:
        super().__init__(f"{type_name or field}: {value}")
        self.field = field
        self.type_name = type_name
        self.value = value


def dump_json(value: Any) -> str:
    """Compact JSON as generic calls return it (UTF-8 kept, no NaN)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def parse_json(text: Any, path: str = "") -> Any:
    """Parse JSON text; :class:`ConvertError` with the position when it is malformed."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode()
    if not isinstance(text, str):
        raise ConvertError(path, f"expected JSON text, got {type(text).__name__}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConvertError(path, f"malformed JSON: {exc}") from None


class Generic:
    """A generic payload kind. Use the constructors below; pass it to ``generic.new_client`` or
    ``generic.register_service``."""

    payload_codec: PayloadCodec
    service_info: ServiceInfo
    binary = False

    def method(self, name: str, mode: StreamingMode | None = None) -> MethodInfo:
        """The method ``name``; :class:`ConvertError` if the IDL has none."""
        mi = self.service_info.methods.get(name)
        if mi is None:
            known = ", ".join(sorted(self.service_info.methods))
            raise ConvertError(
                "", f"no method {name!r} in service {self.service_info.service_name} (it has: {known})"
            )
        return mi

    # Client side: the typed request before the chain, the typed reply after it.
    def encode_request(self, mi: MethodInfo, value: Any) -> Any:
        return value

    def decode_reply(self, mi: MethodInfo, reply: Any) -> Any:
        return reply

    # Server side: the handler's view of a typed request, and the typed reply of its answer.
    def decode_request(self, mi: MethodInfo, request: Any) -> Any:
        return request

    def encode_reply(self, mi: MethodInfo, value: Any) -> Any:
        return value


_STREAM_MODES = frozenset((StreamingMode.CLIENT, StreamingMode.SERVER, StreamingMode.BIDIRECTIONAL))


class ThriftGeneric(Generic):
    """JSON (``json_thrift``) or dict (``map_thrift``) over Thrift: the first IDL argument in, the
    success value out (KITEX-WIRE-2.md §13.2)."""

    payload_codec = PayloadCodec.THRIFT

    def __init__(self, idl: ThriftIDL, opts: ThriftConvOptions, text: bool, service_name: str | None) -> None:
        from kitex_grpc.codec.thrift import service_info

        self.idl = idl
        self.opts = opts
        self.text = text
        self.raw_string_reply = False
        self.service_info = service_info(idl.service, service_name=service_name)

    @staticmethod
    def _bare(mi: MethodInfo) -> bool:
        """A Thrift stream carries bare argument/return structs, not ``_args``/``_result``
        (KITEX-WIRE-2.md §11.6, §12); ping-pong and ``streaming.mode="unary"`` keep the wrappers."""
        return mi.mode in _STREAM_MODES

    def _arg(self, mi: MethodInfo) -> tuple[str, int, Any] | None:
        spec = mi.request_type.thrift_spec
        if not spec:
            return None
        entry = spec[min(spec)]  # Kitex describes the first argument only (parse.go addFunction)
        return entry[1], entry[0], entry[2] if len(entry) == 4 else None

    def _value_in(self, value: Any, ttype: int, arg: Any, path: str) -> Any:
        if self.text:
            if isinstance(value, bytes | bytearray):
                value = bytes(value).decode()
            if not isinstance(value, str):
                raise ConvertError(path, f"expected JSON text, got {type(value).__name__}")
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                if ttype == STRING:
                    return value  # Kitex (thrift/json.go): text that is not JSON is the string itself
                raise ConvertError(path, f"malformed JSON: {exc}") from None
        if ttype == STRUCT:
            return struct_from_json(arg, value, self.opts, path)
        return from_json(value, ttype, arg, self.opts, path)

    def _value_out(self, value: Any, spec: tuple[Any, ...], path: str) -> Any:
        converted = to_json(value, spec[0], spec[2] if len(spec) == 4 else None, self.opts, path)
        return dump_json(converted) if self.text else converted

    def encode_request(self, mi: MethodInfo, value: Any) -> Any:
        if self._bare(mi):
            return self._value_in(value, STRUCT, mi.request_type, "")
        args = mi.request_type()
        arg = self._arg(mi)
        if arg is not None:
            name, ttype, targ = arg
            setattr(args, name, self._value_in(value, ttype, targ, ""))
        return args

    def decode_reply(self, mi: MethodInfo, reply: Any) -> Any:
        if self._bare(mi):
            return self._value_out(reply, (STRUCT, "", mi.response_type, False), "")
        spec = mi.response_type.thrift_spec.get(0)
        if spec is None or reply is None:
            return None
        if self.raw_string_reply and spec[0] == STRING:
            return reply  # Kitex's form: a string return is the string itself, not JSON
        return self._value_out(reply, spec, "")

    def exception(self, mi: MethodInfo, exc: BaseException) -> IDLExceptionError | None:
        """The :class:`IDLExceptionError` for a declared exception raised by the typed client."""
        for fid, spec in mi.response_type.thrift_spec.items():
            if fid != 0 and isinstance(exc, spec[2]):
                return IDLExceptionError(spec[1], self._value_out(exc, spec, spec[1]), spec[2].__name__)
        return None

    def decode_request(self, mi: MethodInfo, request: Any) -> Any:
        if self._bare(mi):
            return self._value_out(request, (STRUCT, "", mi.request_type, False), "")
        arg = self._arg(mi)
        if arg is None:
            return None
        spec = mi.request_type.thrift_spec[min(mi.request_type.thrift_spec)]
        return self._value_out(request, spec, arg[0])

    def encode_reply(self, mi: MethodInfo, value: Any) -> Any:
        if self._bare(mi):
            return self._value_in(value, STRUCT, mi.response_type, "success")
        spec = mi.response_type.thrift_spec.get(0)
        if spec is None:
            return None
        return self._value_in(value, spec[0], spec[2] if len(spec) == 4 else None, "success")

    def raise_declared(self, mi: MethodInfo, exc: IDLExceptionError) -> BaseException:
        """The IDL exception instance for an :class:`IDLExceptionError` a handler raised."""
        for fid, spec in mi.response_type.thrift_spec.items():
            if fid != 0 and exc.field in (spec[1], spec[2].__name__):
                made: BaseException = self._value_in(exc.value, spec[0], spec[2], exc.field)
                return made
        return exc


class PbGeneric(Generic):
    """JSON over protobuf (Kitex ``JSONPbGeneric``, KITEX-WIRE-2.md §13.5)."""

    payload_codec = PayloadCodec.PROTOBUF

    def __init__(self, service_info: ServiceInfo, opts: PbConvOptions) -> None:
        self.service_info = service_info
        self.opts = opts

    def encode_request(self, mi: MethodInfo, value: Any) -> Any:
        return message_from_json(mi.request_type, parse_json(value), self.opts)

    def decode_reply(self, mi: MethodInfo, reply: Any) -> Any:
        return dump_json(message_to_json(reply, self.opts))

    def decode_request(self, mi: MethodInfo, request: Any) -> Any:
        return dump_json(message_to_json(request, self.opts))

    def encode_reply(self, mi: MethodInfo, value: Any) -> Any:
        return message_from_json(mi.response_type, parse_json(value), self.opts)


def _identity(data: Any) -> Any:
    return data


class BinaryGeneric(Generic):
    """Bytes in, bytes out: the methods are learnt per call (there is no IDL)."""

    binary = True

    def __init__(
        self, service_name: str, package: str, codec: PayloadCodec, oneway: frozenset[str] = frozenset()
    ) -> None:
        self.payload_codec = codec
        self.oneway = oneway
        self.service_info = ServiceInfo(service_name, [], package_name=package, payload_codec=codec)
        # A nil request is an empty struct (Kitex binarythrift_codec_v2.go) or an empty message.
        self._empty = b"\x00" if codec is PayloadCodec.THRIFT else b""

    def method(self, name: str, mode: StreamingMode | None = None) -> MethodInfo:
        if mode is None:
            mode = StreamingMode.NONE if self.payload_codec is PayloadCodec.THRIFT else StreamingMode.UNARY
        mi = self.service_info.methods.get(name)
        if mi is None or mi.mode is not mode:
            empty = self._empty

            def serialize(data: Any) -> bytes:
                return empty if data is None else bytes(data)

            mi = MethodInfo(
                name,
                mode,
                None,
                None,
                oneway=name in self.oneway and not mode.is_streaming,
                serialize_request=serialize,
                deserialize_request=_identity,
                serialize_response=serialize,
                deserialize_response=_identity,
            )
            self.service_info.add_method(mi)
        return mi


def json_thrift(
    idl: str | os.PathLike[str],
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    service: str | None = None,
    i64_as_string: bool = False,
    base64_binary: bool = True,
    allow_unknown_fields: bool = False,
    raw_string_reply: bool = False,
) -> ThriftGeneric:
    """JSON over Thrift from an IDL path or IDL text (Kitex ``JSONThriftGeneric``).

    ``service``: the IDL service (default: the last one, Kitex's default parse mode).
    ``raw_string_reply``: a method returning ``string`` gives the string itself, as Kitex does,
    instead of its JSON text (the default, so every reply parses as JSON).
    ``allow_unknown_fields``: skip JSON keys the IDL does not declare, as Kitex does (default: refuse).
    ``base64_binary=False``: binary as the raw bytes' text, Kitex's ``SetBinaryWithBase64(false)``.
    """
    loaded = load_idl(idl, include_dirs=list(include_dirs), service_name=service)
    opts = ThriftConvOptions(
        binary="base64" if base64_binary else "text",
        i64_as_string=i64_as_string,
        allow_unknown_fields=allow_unknown_fields,
    )
    generic = ThriftGeneric(loaded, opts, True, None)
    generic.raw_string_reply = raw_string_reply
    return generic


def map_thrift(
    idl: str | os.PathLike[str],
    *,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    service: str | None = None,
    allow_unknown_fields: bool = False,
) -> ThriftGeneric:
    """Python dicts over Thrift (Kitex ``MapThriftGeneric``): binary as ``bytes``, Python map keys."""
    loaded = load_idl(idl, include_dirs=list(include_dirs), service_name=service)
    opts = ThriftConvOptions(
        binary=DICT_OPTIONS.binary, string_keys=False, allow_unknown_fields=allow_unknown_fields
    )
    return ThriftGeneric(loaded, opts, False, None)


def json_pb(
    source: Any,
    *,
    service: str | None = None,
    include: Sequence[str | os.PathLike[str]] = (),
    int64_as_string: bool = False,
    allow_unknown_fields: bool = False,
) -> PbGeneric:
    """JSON over protobuf (Kitex ``JSONPbGeneric``).

    ``source``: a ``.proto`` path (or a list of them, compiled with protoc), a
    ``FileDescriptorSet`` (message or serialized bytes), or a loaded
    :class:`kitex_grpc.protobuf.ProtoModule`. ``service``: its name (default: the only, or last,
    service).
    """
    from kitex_grpc import protobuf

    if isinstance(source, protobuf.ProtoModule):
        module = source
    elif isinstance(source, str | os.PathLike) and str(source).endswith(".proto"):
        module = protobuf.load(Path(source), include=[Path(i) for i in include])
    elif isinstance(source, list | tuple) and source and all(str(s).endswith(".proto") for s in source):
        module = protobuf.load(*[Path(s) for s in source], include=[Path(i) for i in include])
    else:
        module = module_from_descriptor_set(source)
    services = module.services
    if not services:
        raise ConvertError("", "the descriptors declare no service")
    name = service or list(services)[-1]
    name = name.rpartition(".")[2]
    opts = PbConvOptions(int64_as_string=int64_as_string, allow_unknown_fields=allow_unknown_fields)
    try:
        return PbGeneric(module.service_info(name), opts)
    except KeyError as exc:
        raise ConvertError("", str(exc.args[0])) from None


def module_from_descriptor_set(source: Any) -> Any:
    """A :class:`kitex_grpc.protobuf.ProtoModule` of a FileDescriptorSet (message, bytes or path)."""
    from google.protobuf import descriptor_pb2

    if isinstance(source, str | os.PathLike):
        source = Path(source).read_bytes()
    if isinstance(source, bytes | bytearray):
        fds = descriptor_pb2.FileDescriptorSet.FromString(bytes(source))
    elif isinstance(source, descriptor_pb2.FileDescriptorSet):
        fds = source
    else:
        raise TypeError(f"json_pb: cannot load descriptors from {type(source).__name__}")
    return module_from_files(list(fds.file))


def module_from_files(files: list[Any]) -> Any:
    """A ProtoModule of FileDescriptorProtos given in any order (dependencies are added first)."""
    from google.protobuf import descriptor_pool

    from kitex_grpc.protobuf import ProtoModule

    by_name = {f.name: f for f in files}
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added or name not in by_name:
            return
        added.add(name)
        for dep in by_name[name].dependency:
            add(dep)
        pool.Add(by_name[name])

    for f in files:
        add(f.name)
    return ProtoModule(pool, [f.name for f in files])


def binary_thrift(service_name: str, *, oneway: Sequence[str] = ()) -> BinaryGeneric:
    """Thrift struct bytes in and out (Kitex ``BinaryThriftGenericV2``): the ``<method>_args`` struct
    body for a request and the ``<method>_result`` struct body for a reply.

    ``oneway``: the methods that are ``oneway`` in the IDL (sent as ONEWAY, no reply awaited); without
    an IDL there is no other way to know.
    """
    return BinaryGeneric(service_name, "", PayloadCodec.THRIFT, frozenset(oneway))


def binary_pb(service_name: str, package: str = "") -> BinaryGeneric:
    """Protobuf message bytes in and out (Kitex ``BinaryPbGeneric``); ``package`` builds the gRPC path."""
    return BinaryGeneric(service_name, package, PayloadCodec.PROTOBUF)
