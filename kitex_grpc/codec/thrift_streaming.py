"""Thrift streaming methods: the ``streaming.mode`` function annotation and the messages of a stream.

Kitex marks a streaming Thrift method with the annotation ``streaming.mode`` on the function (thriftgo
``generator/golang/streaming/streaming.go ParseStreaming``)::

    Reply Chat(1: Request req) (streaming.mode="bidirectional")

The value is one of ``"bidirectional"``, ``"client"``, ``"server"`` or ``"unary"`` (unary over a streaming
transport); any other value, or more or fewer than one argument, is an IDL error. A method without the
annotation is ordinary ping-pong (``StreamingMode.NONE``).

On a stream each message is the **bare** argument struct (client to server) or the bare result struct
(server to client): no ``<method>_args`` / ``<method>_result`` wrapper and no message envelope, on gRPC
(``application/grpc+thrift``) and on TTHeader Streaming alike (KITEX-WIRE-2.md §11.6, §12; Kitex
``tool/internal_pkg/tpl/service.go``). A ``"unary"`` method keeps the wrappers of a ping-pong method.
"""

from __future__ import annotations

from typing import Any, Final

from kitex_grpc.serviceinfo import StreamingMode

__all__ = ["STREAMING_MODE_KEY", "StreamMessages", "stream_messages", "streaming_mode"]

STREAMING_MODE_KEY: Final = "streaming.mode"
_TYPE_STRUCT: Final = 12
_MODES: Final = {
    "bidirectional": StreamingMode.BIDIRECTIONAL,
    "client": StreamingMode.CLIENT,
    "server": StreamingMode.SERVER,
    "unary": StreamingMode.UNARY,
}


def streaming_mode(service: Any, name: str) -> StreamingMode:
    """The mode of method ``name`` of a thriftpy2 service class, from its ``streaming.mode`` annotation.

    ``NONE`` without the annotation. A method inherited through ``extends`` keeps the annotation of
    the service that declared it. Raises ``ValueError`` for a value thriftgo refuses.
    """
    for klass in getattr(service, "__mro__", (service,)):
        own = vars(klass)
        if f"{name}_args" not in own:  # not declared here (thriftpy2 sets it on the declaring class)
            continue
        value = own.get("__thrift_function_annotations__", {}).get(name, {}).get(STREAMING_MODE_KEY)
        if value is None:
            return StreamingMode.NONE
        mode = _MODES.get(value)
        if mode is None:
            choices = ", ".join(f'"{v}"' for v in _MODES)
            raise ValueError(
                f"method {name!r}: invalid value {value!r} for annotation {STREAMING_MODE_KEY} "
                f"(one of {choices})"
            )
        return mode
    return StreamingMode.NONE


class StreamMessages:
    """The struct types a streaming method's messages have: ``request`` (the single argument's type)
    and ``response`` (the return type)."""

    __slots__ = ("request", "response")

    def __init__(self, request: type[Any], response: type[Any]) -> None:
        self.request = request
        self.response = response


def stream_messages(name: str, args_type: Any, result_type: Any) -> StreamMessages:
    """The message types of streaming method ``name`` from its thriftpy2 ``_args`` / ``_result`` structs.

    Raises ``ValueError`` unless the method has exactly one argument (thriftgo: "streaming function
    should have exactly 1 argument") and both it and the return type are structs (a stream message is
    a bare struct on the wire).
    """
    spec = args_type.thrift_spec
    if len(spec) != 1:
        raise ValueError(f"streaming method {name!r} should have exactly 1 argument, not {len(spec)}")
    arg = next(iter(spec.values()))
    if arg[0] != _TYPE_STRUCT:
        raise ValueError(f"streaming method {name!r}: its argument {arg[1]!r} must be a struct")
    success = result_type.thrift_spec.get(0)
    if success is None or success[0] != _TYPE_STRUCT:
        raise ValueError(f"streaming method {name!r} must return a struct")
    return StreamMessages(arg[2], success[2])
