"""What a service is: its name, package, payload codec and methods (Kitex ``pkg/serviceinfo``)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kitex_grpc.errors import InternalError


class StreamingMode(enum.Enum):
    """How many messages flow each way (Kitex ``serviceinfo.StreamingMode``).

    ``NONE`` is Kitex's ping-pong (Thrift / Kitex Protobuf); over gRPC it is sent like ``UNARY``.
    """

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is Python code

    NONE = "none"
    UNARY = "unary"
    CLIENT = "client"
    SERVER = "server"
    BIDIRECTIONAL = "bidirectional"

    @classmethod
    def from_flags(cls, client_streaming: bool, server_streaming: bool) -> StreamingMode:
        """The mode of a .proto method from its ``stream`` keywords."""
        if client_streaming:
            return cls.BIDIRECTIONAL if server_streaming else cls.CLIENT
        return cls.SERVER if server_streaming else cls.UNARY

    # Plain attributes of each member, set below: an Enum property costs ~0.4 µs a look-up (Enum
    # hashing), and the call paths ask for every call.
    is_streaming: bool
    client_streams: bool
    server_streams: bool


for _mode in StreamingMode:
    _mode.client_streams = _mode in (StreamingMode.CLIENT, StreamingMode.BIDIRECTIONAL)
    _mode.server_streams = _mode in (StreamingMode.SERVER, StreamingMode.BIDIRECTIONAL)
    _mode.is_streaming = _mode.client_streams or _mode.server_streams
del _mode


class PayloadCodec(enum.Enum):
    """How a message body is encoded."""

    PROTOBUF = "protobuf"
    THRIFT = "thrift"


Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]


class MethodInfo:
    """One RPC method: its name, mode, message types and how to (de)serialize them.

    ``serialize_request``/``deserialize_request`` and the response pair default to protobuf's
    ``SerializeToString`` / ``FromString``; other codecs pass their own.
    """

    __slots__ = (
        "adapt_handler",
        "deserialize_request",
        "deserialize_response",
        "mode",
        "name",
        "oneway",
        "pack_request",
        "request_type",
        "response_type",
        "serialize_request",
        "serialize_response",
        "unpack_response",
    )

    def __init__(
        self,
        name: str,
        mode: StreamingMode,
        request_type: Any,
        response_type: Any,
        *,
        oneway: bool = False,
        serialize_request: Serializer | None = None,
        deserialize_request: Deserializer | None = None,
        serialize_response: Serializer | None = None,
        deserialize_response: Deserializer | None = None,
        pack_request: Callable[[Any], Any] | None = None,
        unpack_response: Callable[[Any], Any] | None = None,
        adapt_handler: Callable[[Callable[..., Any]], Callable[[Any], Any]] | None = None,
    ) -> None:
        if not name:
            raise ValueError("a method needs a name")
        if oneway and mode.is_streaming:
            raise ValueError(f"method {name!r}: a one-way method cannot stream")
        self.name = name
        self.mode = mode
        self.oneway = oneway
        self.request_type = request_type
        self.response_type = response_type
        self.serialize_request: Serializer = serialize_request or _protobuf_serializer(request_type)
        self.deserialize_request: Deserializer = deserialize_request or _protobuf_deserializer(request_type)
        self.serialize_response: Serializer = serialize_response or _protobuf_serializer(response_type)
        self.deserialize_response: Deserializer = deserialize_response or _protobuf_deserializer(
            response_type
        )
        # Codecs whose wire request/response differ from what users pass and get (Thrift's args and
        # result structs) set these. The chain sees the wire form, as Kitex middlewares see
        # args/result structs: the client packs before the chain and unpacks after it, and the
        # server calls the handler through adapt_handler(fn), which returns an async function of the
        # wire request.
        self.pack_request = pack_request
        self.unpack_response = unpack_response
        self.adapt_handler = adapt_handler

    def __repr__(self) -> str:
        return f"MethodInfo({self.name!r}, {self.mode.name}{', oneway' if self.oneway else ''})"


def _protobuf_serializer(message_type: Any) -> Serializer:
    if message_type is None:
        return lambda _msg: b""
    method: Serializer = message_type.SerializeToString
    return method


def _protobuf_deserializer(message_type: Any) -> Deserializer:
    if message_type is None:
        return lambda _data: None
    method: Deserializer = message_type.FromString
    return method


class ServiceInfo:
    """A service: ``package_name.service_name`` and its methods.

    ``grpc_path(method)`` is ``/<package>.<Service>/<Method>`` (``/<Service>/<Method>`` without a
    package), as Kitex's client sends it (KITEX-WIRE.md §3).
    """

    __slots__ = ("_paths", "methods", "package_name", "payload_codec", "service_name")

    def __init__(
        self,
        service_name: str,
        methods: Iterable[MethodInfo],
        *,
        package_name: str = "",
        payload_codec: PayloadCodec = PayloadCodec.PROTOBUF,
    ) -> None:
        if not service_name or "/" in service_name:
            raise ValueError(f"invalid service name {service_name!r}")
        self.service_name = service_name
        self.package_name = package_name
        self.payload_codec = payload_codec
        table: dict[str, MethodInfo] = {}
        for method in methods:
            if method.name in table:
                raise ValueError(f"service {service_name!r} declares method {method.name!r} twice")
            table[method.name] = method
        self.methods: Mapping[str, MethodInfo] = table
        self._paths = {name: f"/{self.full_name}/{name}" for name in table}

    @property
    def full_name(self) -> str:
        return f"{self.package_name}.{self.service_name}" if self.package_name else self.service_name

    def method(self, name: str) -> MethodInfo | None:
        return self.methods.get(name)

    def add_method(self, method: MethodInfo) -> None:
        """Add (or replace) a method after construction: generic services learn methods per call."""
        table = dict(self.methods)
        table[method.name] = method
        self.methods = table
        self._paths = {**self._paths, method.name: f"/{self.full_name}/{method.name}"}

    def grpc_path(self, method: str) -> str:
        return self._paths[method]

    def __repr__(self) -> str:
        return f"ServiceInfo({self.full_name!r}, methods={list(self.methods)})"


def method_for_call(service: ServiceInfo, name: str, modes: tuple[StreamingMode, ...]) -> MethodInfo:
    """The method ``name`` of ``service`` for a call of one of ``modes``; InternalError otherwise."""
    mi = service.methods.get(name)
    if mi is None:
        raise InternalError(f"non-existent method {name!r} in service {service.full_name!r}")
    if mi.mode not in modes:
        raise InternalError(f"method {name!r} is {mi.mode.name}; use the matching call for that mode")
    return mi
