"""Thrift payloads through thriftpy2: IDL loaded at run time, args/result structs in Cython binary.

This is the only module that imports thriftpy2. It turns a thriftpy2 service class into a
:class:`~kitex_grpc.serviceinfo.ServiceInfo` whose methods carry the hooks the chain needs:

* on the wire a request is the method's ``<method>_args`` struct and a reply its ``<method>_result``
  struct, as Kitex's generated code has them (middlewares see these structs, as in Kitex);
* ``pack_request`` wraps what a user passes (the single argument, a tuple of arguments, or an args
  struct) into the args struct; ``unpack_response`` returns ``result.success`` or raises the IDL
  exception set in the result;
* ``adapt_handler(fn)`` calls ``await fn(*args)`` and stores its return value, or a declared IDL
  exception it raised, in the result struct (Kitex ``tool/internal_pkg/tpl/service.go``: declared
  exceptions are a normal REPLY, anything else becomes a TApplicationException).

Only the struct bodies are (de)serialized here, with thriftpy2's Cython binary protocol; the strict
message header around them is :mod:`kitex_grpc.protocol.thrift_message`'s job. In the compiled build
:mod:`kitex_grpc.codec.thrift_binary` reads and writes them first, in a fraction of the time; whatever
it hands over (bad input, values of unusual types) goes the Cython way, which decides the outcome.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import CoroutineType
from typing import Any, Final

import thriftpy2
import thriftpy2.protocol.cybin as _cybin
import thriftpy2.transport.memory as _memory
from thriftpy2.thrift import TException

from kitex_grpc.codec.thrift_bounds import body_check
from kitex_grpc.codec.thrift_required import required_check
from kitex_grpc.codec.thrift_streaming import stream_messages, streaming_mode
from kitex_grpc.compiled import runs_compiled
from kitex_grpc.errors import ProtocolError, RemoteOrNetworkError, TApplicationType
from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo, StreamingMode

__all__ = ["MissingResultError", "load", "method_info", "service_info"]

_TYPE_STRUCT: Final = 12
# The Cython binary protocol and memory buffer (thriftpy2's stubs do not declare these names).
TCyBinaryProtocol: Any = getattr(_cybin, "TCyBinaryProtocol")  # noqa: B009
TCyMemoryBuffer: Any = getattr(_memory, "TCyMemoryBuffer")  # noqa: B009

try:
    from kitex_grpc.codec import thrift_binary
except ImportError:  # no librt (it is a dependency on CPython only): the Cython path does it all
    _FAST = False
else:
    # Interpreted, thrift_binary costs more than the Cython path; it is worth it compiled only.
    _FAST = runs_compiled(thrift_binary)


class MissingResultError(RemoteOrNetworkError):
    """A REPLY whose result struct has neither a value nor an exception (TApplicationException 5).

    Kitex's client turns this into ``TApplicationException`` MissingResult ("<method> failed: unknown
    result"); it happens when a Framed/Buffered server drops a biz status (KITEX-WIRE.md §1.4).
    """

    tapp_type = TApplicationType.MISSING_RESULT


def load(
    path: str | Path, module_name: str | None = None, include_dirs: list[str | os.PathLike[str]] | None = None
) -> Any:
    """Load a ``.thrift`` IDL at run time and return thriftpy2's module for it.

    ``module_name`` must end with ``_thrift`` (thriftpy2's rule); by default it is the file's stem
    plus ``_thrift``. The module holds the structs, exceptions and service classes of the IDL.
    """
    p = Path(path)
    name = module_name or f"{p.stem}_thrift"
    return thriftpy2.load(str(p), module_name=name, include_dirs=include_dirs)


# Buffers are reused: a fresh TCyMemoryBuffer and protocol cost about a quarter of a small message's
# (de)serialization. Each pool holds free (buffer, protocol) pairs; list.pop and list.append are atomic,
# so threads and nested calls each take a pair of their own (or make one). A buffer grows to the largest
# message it held and never shrinks, so one that held more than _POOLED_MAX_BYTES is dropped instead
# (so is one whose write failed).
_POOLED_MAX_BYTES: Final = 64 * 1024
_readers: Final[list[tuple[Any, Any]]] = []
_writers: Final[list[tuple[Any, Any]]] = []


def _take(pool: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    try:
        return pool.pop()
    except IndexError:  # none free (or another thread took the last one since)
        buf = TCyMemoryBuffer()
        return buf, TCyBinaryProtocol(buf)


def write_cython(obj: Any) -> bytes:
    """``obj`` (a thriftpy2 struct) as a binary struct body, written by thriftpy2's Cython protocol."""
    buf, proto = pair = _take(_writers)
    buf.clean()
    proto.write_struct(obj)  # on failure the pair is dropped, whatever it held
    data: bytes = buf.getvalue()
    if len(data) <= _POOLED_MAX_BYTES:
        _writers.append(pair)
    return data


def serializer(struct_type: Any = None) -> Callable[[Any], bytes]:
    """A function writing a thriftpy2 struct as a binary struct body.

    With ``struct_type``, a value of that type whose required fields (at any depth) are not all set
    raises :class:`~kitex_grpc.codec.thrift_required.RequiredFieldError` instead, before any byte is
    written (Apache Thrift's ``validate()``). The compiled path checks them as it writes and hands such
    a value over; the interpreted path runs the type's plan (none at all for an IDL without them).
    """
    check = None if struct_type is None else required_check(struct_type)
    if not _FAST:
        if check is None:
            return write_cython
        plain_check: Callable[[Any], None] = check

        def serialize_checked(obj: Any) -> bytes:
            plain_check(obj)
            return write_cython(obj)

        return serialize_checked

    def serialize(obj: Any) -> bytes:
        try:
            return thrift_binary.write_struct(obj)
        except Exception:  # handed over: the Cython path decides (its bytes or its error)
            pass
        if check is not None:
            check(obj)
        return write_cython(obj)

    return serialize


# thriftpy2's Cython reader does not fail when a value runs past the end of its input: a string
# whose length exceeds the bytes left comes back padded with whatever memory its read buffer held,
# and a struct cut short reads as complete (past the end every byte reads as 0, a STOP). It trusts
# declared sizes too, so each body is walked first (thrift_bounds.body_check). Should a reader
# ever read past what the walk saw, these bytes after the body are the second line: a read that went
# past the body's end has eaten into them, and the message is refused.
_GUARD: Final = bytes(8)


def deserializer(struct_type: Any) -> Callable[[bytes], Any]:
    """A function reading a binary struct body into a new ``struct_type``.

    Bytes that do not hold a whole struct raise :class:`ProtocolError`, and so does a struct whose
    required field (at any depth) the body did not set (a
    :class:`~kitex_grpc.codec.thrift_required.RequiredFieldError`, as Kitex's readers refuse it);
    bytes after its end are ignored, as Kitex ignores them.
    """
    read_cython = cython_deserializer(struct_type)
    check = required_check(struct_type)
    if not _FAST:
        if check is None:
            return read_cython
        plain_check: Callable[[Any], None] = check

        def deserialize_checked(data: bytes) -> Any:
            obj = read_cython(data)
            plain_check(obj)
            return obj

        return deserialize_checked
    read = thrift_binary.struct_codec(struct_type).read

    def deserialize(data: bytes) -> Any:
        try:
            return read(data)  # it hands over a struct whose required field is unset
        except Exception:  # handed over: the walk and the Cython path decide
            pass
        obj = read_cython(data)
        if check is not None:
            check(obj)
        return obj

    return deserialize


def cython_deserializer(struct_type: Any) -> Callable[[bytes], Any]:
    """:func:`deserializer` without the compiled fast path: the walk, then thriftpy2's Cython reader."""
    check = body_check(struct_type)

    def deserialize(data: bytes) -> Any:
        try:
            check(data)
        except ProtocolError as exc:
            raise ProtocolError(f"thrift: cannot decode {struct_type.__name__}: {exc.detail}") from None
        obj = struct_type()
        buf, proto = pair = _take(_readers)
        try:
            buf.setvalue(data + _GUARD)  # one call fewer than setvalue(data), write(_GUARD)
            proto.read_struct(obj)
            overran = len(buf.read(8)) < 8
        except Exception as bad:  # thriftpy2 raises several unrelated types for bad bytes
            # (not `exc`: compiled, a name keeps the type of its first binding in the function)
            raise ProtocolError(
                f"thrift: cannot decode {struct_type.__name__}: {type(bad).__name__}: {bad}"
            ) from bad
        finally:
            if len(data) <= _POOLED_MAX_BYTES:
                _readers.append(pair)
        if overran:
            raise ProtocolError(
                f"thrift: cannot decode {struct_type.__name__}: a value runs past the end of the "
                f"{len(data)}-byte body"
            )
        return obj

    return deserialize


def _arg_names(args_type: Any) -> list[str]:
    spec = args_type.thrift_spec
    return [spec[fid][1] for fid in sorted(spec)]


def _exception_fields(result_type: Any) -> list[tuple[str, type[BaseException]]]:
    fields = []
    for fid, entry in sorted(result_type.thrift_spec.items()):
        exc_type = entry[2] if entry[0] == _TYPE_STRUCT else None
        if fid != 0 and isinstance(exc_type, type) and issubclass(exc_type, BaseException):
            fields.append((entry[1], exc_type))
    return fields


def method_info(service: Any, name: str) -> MethodInfo:
    """The :class:`MethodInfo` of method ``name`` of a thriftpy2 service class.

    Its mode comes from the ``streaming.mode`` annotation (:mod:`kitex_grpc.codec.thrift_streaming`). A
    client/server/bidirectional stream carries bare structs: the request is the single argument's
    struct, the response the return type, with no pack/unpack/adapt hooks (the handler gets and yields
    the structs themselves). Ping-pong and ``"unary"`` methods carry the ``_args``/``_result`` wrappers.
    """
    args_type = getattr(service, f"{name}_args")
    result_type = getattr(service, f"{name}_result")
    mode = streaming_mode(service, name)
    oneway = bool(getattr(result_type, "oneway", False))
    if mode.is_streaming:
        if oneway:
            raise ValueError(f"method {name!r}: a oneway method cannot stream")
        messages = stream_messages(name, args_type, result_type)
        return MethodInfo(
            name,
            mode,
            messages.request,
            messages.response,
            serialize_request=serializer(messages.request),
            deserialize_request=deserializer(messages.request),
            serialize_response=serializer(messages.response),
            deserialize_response=deserializer(messages.response),
        )
    if mode is StreamingMode.UNARY and len(args_type.thrift_spec) != 1:
        # thriftgo ParseStreaming: every annotated function, "unary" too
        raise ValueError(f"streaming method {name!r} should have exactly 1 argument")
    arg_names = _arg_names(args_type)
    exceptions = _exception_fields(result_type)
    exception_types = tuple(exc for _, exc in exceptions)
    has_success = 0 in result_type.thrift_spec

    def pack_request(request: Any) -> Any:
        if isinstance(request, args_type):
            return request
        if len(arg_names) == 1:
            return args_type(request)
        if isinstance(request, tuple):
            return args_type(*request)
        if request is None and not arg_names:
            return args_type()
        raise TypeError(
            f"{name}: pass the {len(arg_names)} arguments ({', '.join(arg_names)}) as a tuple "
            f"or a {args_type.__name__}"
        )

    def unpack_response(result: Any) -> Any:
        for field, _ in exceptions:
            exc = getattr(result, field, None)
            if exc is not None:
                raise exc
        if not has_success:
            return None
        value = result.success
        if value is None:
            raise MissingResultError(f"{name} failed: unknown result", remote=True)
        return value

    single_arg = arg_names[0] if len(arg_names) == 1 else None

    def adapt_handler(fn: Callable[..., Any]) -> Callable[[Any], Awaitable[Any]]:
        async def invoke(args: Any) -> Any:
            try:
                if single_arg is not None:
                    value = fn(getattr(args, single_arg))
                else:
                    value = fn(*[getattr(args, n) for n in arg_names])
                if type(value) is CoroutineType or inspect.isawaitable(value):
                    value = await value
            except exception_types as exc:
                result = result_type()
                for field, exc_type in exceptions:
                    if isinstance(exc, exc_type):
                        setattr(result, field, exc)
                        return result
                raise  # pragma: no cover - every caught type has a field
            if oneway:
                return None
            result = result_type()
            if has_success:
                result.success = value
            return result

        return invoke

    return MethodInfo(
        name,
        mode,
        args_type,
        result_type,
        oneway=oneway,
        serialize_request=serializer(args_type),
        deserialize_request=deserializer(args_type),
        serialize_response=serializer(result_type),
        deserialize_response=deserializer(result_type),
        pack_request=pack_request,
        unpack_response=unpack_response,
        adapt_handler=adapt_handler,
    )


def service_info(service: Any, *, service_name: str | None = None) -> ServiceInfo:
    """The :class:`ServiceInfo` of a thriftpy2 service class (``module.Echo``), payload codec THRIFT.

    ``service_name`` defaults to the IDL service name, which Kitex sends as the ``isn`` TTHeader key.
    """
    names = getattr(service, "thrift_services", None)
    if names is None:
        raise TypeError(f"{service!r} is not a thriftpy2 service class")
    return ServiceInfo(
        service_name or service.__name__,
        [method_info(service, n) for n in names],
        payload_codec=PayloadCodec.THRIFT,
    )


def is_idl_exception(exc: BaseException) -> bool:
    """Whether ``exc`` is a thriftpy2 exception type (an IDL ``exception``)."""
    return isinstance(exc, TException)
