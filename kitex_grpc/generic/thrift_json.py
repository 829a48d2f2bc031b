"""JSON (and plain Python values) <-> thriftpy2 structs, with Kitex's mapping rules (sans-IO).

The rules are those of Kitex's own converter (KITEX-WIRE-2.md §13.2, ``pkg/generic/thrift``), so the
same request JSON gives the same bytes on the wire as Go Kitex's ``JSONThriftGeneric``:

* i8/i16/i32/i64 accept a JSON number or a decimal string; double a number or a numeric string;
* binary is standard padded base64 in JSON (``binary="base64"``), raw bytes for dict values;
* enums are numbers (a declared name is accepted too, and means its value);
* sets and lists are arrays (a set keeps the array's order and duplicates, as Kitex writes it);
* map keys are JSON strings converted to the key type (``"1"`` for i32, ``"true"`` for bool);
* an absent or null ``optional`` field is omitted; an absent ``required`` or default-requiredness
  field is written as its type's zero value (0, "", empty container, empty struct), as Kitex does.

Where Kitex is lax we are strict, and say where (``ConvertError.path``): a JSON key the IDL does not
declare is refused (Kitex skips it; ``allow_unknown_fields=True`` does the same), an integer out of
its type's range is refused (Kitex truncates it), and a value of the wrong JSON type is refused
(Kitex writes a string's raw text, a scalar as a one-element list, a name as enum 0).

Replies: i64 is a JSON number by default and exact at any size (Python's ``json`` writes integers
exactly; Kitex's output is exact too, but its ``kitexcall`` loses digits above 2^53 through float64);
``i64_as_string=True`` writes decimal strings, for JavaScript readers. A missing ``required`` field in a
reply is an error, unknown field ids are skipped, and fields with an IDL default show it when absent.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from kitex_grpc.generic.errors import ConvertError, join
from kitex_grpc.generic.thrift_idl import optional_fields

__all__ = [
    "DICT_OPTIONS",
    "JSON_OPTIONS",
    "ThriftConvOptions",
    "from_json",
    "struct_from_json",
    "struct_to_json",
    "to_json",
]

BOOL: Final = 2
BYTE: Final = 3
DOUBLE: Final = 4
I16: Final = 6
I32: Final = 8
I64: Final = 10
STRING: Final = 11
STRUCT: Final = 12
MAP: Final = 13
SET: Final = 14
LIST: Final = 15
BINARY: Final = 18

_RANGES: Final = {
    BYTE: (-(2**7), 2**7 - 1),
    I16: (-(2**15), 2**15 - 1),
    I32: (-(2**31), 2**31 - 1),
    I64: (-(2**63), 2**63 - 1),
}
_TYPE_NAMES: Final = {
    BOOL: "bool",
    BYTE: "i8",
    DOUBLE: "double",
    I16: "i16",
    I32: "i32",
    I64: "i64",
    STRING: "string",
    STRUCT: "struct",
    MAP: "map",
    SET: "set",
    LIST: "list",
    BINARY: "binary",
}
_DECIMAL: Final = re.compile(r"-?[0-9]+\Z")


@dataclass(frozen=True, slots=True)
class ThriftConvOptions:
    """How values are converted.

    ``binary``: ``"base64"`` (JSON generic, Kitex's default), ``"bytes"`` (dict generic: ``bytes``
    values), or ``"text"`` (the raw bytes as a latin-1 string, Kitex's ``SetBinaryWithBase64(false)``).
    ``string_keys``: map keys are strings on both sides (JSON); ``False`` keeps Python keys (dict generic).
    """

    binary: Literal["base64", "bytes", "text"] = "base64"
    string_keys: bool = True
    i64_as_string: bool = False
    allow_unknown_fields: bool = False


JSON_OPTIONS: Final = ThriftConvOptions()
DICT_OPTIONS: Final = ThriftConvOptions(binary="bytes", string_keys=False)


def _split(spec: Any) -> tuple[int, Any]:
    """``(ttype, argument)`` of a container element spec (an int or a ``(ttype, arg)`` tuple)."""
    if isinstance(spec, tuple):
        return spec[0], spec[1]
    return spec, None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple | set | frozenset):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _type_name(ttype: int, arg: Any) -> str:
    if ttype == I32 and arg is not None:
        return f"enum {arg.__name__}"
    if ttype == STRUCT and arg is not None:
        return str(arg.__name__)
    return _TYPE_NAMES.get(ttype, f"type {ttype}")


# -- JSON value -> thriftpy2 value ---------------------------------------------------------------------


def _integer(value: Any, ttype: int, path: str) -> int:
    if isinstance(value, bool):
        raise ConvertError(path, f"expected {_TYPE_NAMES[ttype]}, got a bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DECIMAL.match(value.strip()):
        number = int(value.strip())
    else:
        raise ConvertError(path, f"expected {_TYPE_NAMES[ttype]}, got {_kind(value)} {value!r}")
    low, high = _RANGES[ttype]
    if not low <= number <= high:
        raise ConvertError(path, f"{number} is out of range for {_TYPE_NAMES[ttype]}")
    return number


def _enum(value: Any, enum_type: Any, path: str) -> int:
    if isinstance(value, str) and not _DECIMAL.match(value.strip()):
        names: dict[str, int] = getattr(enum_type, "_NAMES_TO_VALUES", {})
        if value in names:
            return names[value]
        raise ConvertError(path, f"{value!r} is not a value of enum {enum_type.__name__}")
    return _integer(value, I32, path)


def _double(value: Any, path: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConvertError(path, f"expected double, got {_kind(value)} {value!r}")


def _binary(value: Any, opts: ThriftConvOptions, path: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview) and opts.binary == "bytes":
        return bytes(value)
    if not isinstance(value, str):
        raise ConvertError(path, f"expected binary ({opts.binary}), got {_kind(value)}")
    if opts.binary == "base64":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ConvertError(path, "expected standard (padded) base64 for binary") from None
    if opts.binary == "text":
        return value.encode("latin-1", "surrogateescape")
    return value.encode()


def _map_key(key: Any, ttype: int, arg: Any, opts: ThriftConvOptions, path: str) -> Any:
    if not isinstance(key, str):  # a Python dict of the dict generic: keys are values already
        return from_json(key, ttype, arg, opts, path)
    where = f"{path}[{key!r}]"
    if ttype in _RANGES:
        if not _DECIMAL.match(key):
            raise ConvertError(where, f"map key {key!r} is not a decimal {_TYPE_NAMES[ttype]}")
        return _integer(key, ttype, where) if arg is None else _enum(key, arg, where)
    if ttype == BOOL:
        if key not in ("true", "false"):
            raise ConvertError(where, f"map key {key!r} is not true or false")
        return key == "true"
    if ttype == DOUBLE:
        return _double(key, where)
    if ttype == STRING:
        return key
    if ttype == BINARY:
        return _binary(key, opts, where)
    raise ConvertError(where, f"map keys of type {_type_name(ttype, arg)} cannot come from JSON strings")


def from_json(value: Any, ttype: int, arg: Any, opts: ThriftConvOptions, path: str) -> Any:
    """One parsed JSON value as the thriftpy2 value of ``(ttype, arg)``; :class:`ConvertError` if not."""
    if value is None:
        raise ConvertError(path, f"null is not a {_type_name(ttype, arg)}")
    if ttype in _RANGES:
        return _integer(value, ttype, path) if arg is None else _enum(value, arg, path)
    if ttype == STRING:
        if isinstance(value, str):
            return value
        raise ConvertError(path, f"expected string, got {_kind(value)}")
    if ttype == BINARY:
        return _binary(value, opts, path)
    if ttype == BOOL:
        if isinstance(value, bool):
            return value
        raise ConvertError(path, f"expected bool, got {_kind(value)}")
    if ttype == DOUBLE:
        return _double(value, path)
    if ttype == STRUCT:
        return struct_from_json(arg, value, opts, path)
    if ttype in (LIST, SET):
        if not isinstance(value, list | tuple | set | frozenset):
            raise ConvertError(path, f"expected an array for {_TYPE_NAMES[ttype]}, got {_kind(value)}")
        et, ea = _split(arg)
        return [from_json(item, et, ea, opts, f"{path}[{i}]") for i, item in enumerate(value)]
    if ttype == MAP:
        if not isinstance(value, dict):
            raise ConvertError(path, f"expected an object for map, got {_kind(value)}")
        (kt, ka), (vt, va) = _split(arg[0]), _split(arg[1])
        out: dict[Any, Any] = {}
        for key, item in value.items():
            k = _map_key(key, kt, ka, opts, path)
            out[k] = from_json(item, vt, va, opts, f"{path}[{key!r}]")
        return out
    raise ConvertError(path, f"unsupported Thrift type {ttype}")


# Per struct class: its field names and (id, type, name, argument, optional, required) rows in id order.
_Plan = tuple[frozenset[str], tuple[tuple[int, int, str, Any, bool, bool], ...]]
_PLANS: dict[Any, _Plan] = {}


def _plan(struct_type: Any) -> _Plan:
    plan = _PLANS.get(struct_type)
    if plan is None:
        spec: dict[int, tuple[Any, ...]] = struct_type.thrift_spec
        optional = optional_fields(struct_type)
        rows = tuple(
            (fid, e[0], e[1], e[2] if len(e) == 4 else None, fid in optional, e[-1] is True)
            for fid, e in sorted(spec.items())
        )
        plan = _PLANS[struct_type] = (frozenset(e[1] for e in spec.values()), rows)
    return plan


def struct_from_json(struct_type: Any, value: Any, opts: ThriftConvOptions, path: str = "") -> Any:
    """A new ``struct_type`` from a JSON object (absent fields as Kitex writes them)."""
    if not isinstance(value, dict):
        raise ConvertError(path, f"expected an object for {struct_type.__name__}, got {_kind(value)}")
    names, rows = _plan(struct_type)
    if not opts.allow_unknown_fields:
        for key in value:
            if key not in names:
                raise ConvertError(join(path, str(key)), f"unknown field of {struct_type.__name__}")
    obj = struct_type()
    for _fid, ttype, name, arg, optional, _required in rows:
        item = value.get(name)
        if item is not None:
            setattr(obj, name, from_json(item, ttype, arg, opts, join(path, name)))
        elif optional:
            setattr(obj, name, None)
        else:
            setattr(obj, name, _zero(ttype, arg, opts))
    return obj


def _zero(ttype: int, arg: Any, opts: ThriftConvOptions) -> Any:
    # Kitex's writer (thrift/write.go) writes an absent non-optional field as its type's zero value.
    if ttype in _RANGES:
        return 0
    if ttype == BOOL:
        return False
    if ttype == DOUBLE:
        return 0.0
    if ttype == STRING:
        return ""
    if ttype == BINARY:
        return b""
    if ttype in (LIST, SET):
        return []
    if ttype == MAP:
        return {}
    obj = arg()  # an empty struct: STOP only
    for entry in arg.thrift_spec.values():
        setattr(obj, entry[1], None)
    return obj


# -- thriftpy2 value -> JSON value ---------------------------------------------------------------------


def _key_text(key: Any, ttype: int) -> str:
    # Kitex read.go stringifies map keys: FormatInt, FormatBool, FormatFloat('f', -1), the string.
    if ttype == BOOL:
        return "true" if key else "false"
    if ttype == DOUBLE:
        return repr(float(key)) if not float(key).is_integer() else str(int(key))
    if ttype == BINARY and isinstance(key, bytes):
        return base64.b64encode(key).decode()
    return str(key)


def to_json(value: Any, ttype: int, arg: Any, opts: ThriftConvOptions, path: str) -> Any:
    """A thriftpy2 value as a JSON-ready value (or a Python value with ``string_keys=False``)."""
    if ttype in _RANGES:
        if ttype == I64 and opts.i64_as_string and arg is None:
            return str(value)
        return int(value)
    if ttype == BINARY:
        data = value.encode() if isinstance(value, str) else bytes(value)
        if opts.binary == "base64":
            return base64.b64encode(data).decode()
        if opts.binary == "text":
            return data.decode("latin-1")
        return data
    if ttype == STRING:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if ttype == DOUBLE:
        number = float(value)
        if opts.string_keys and not math.isfinite(number):
            raise ConvertError(path, f"{number} has no JSON form")
        return number
    if ttype == BOOL:
        return bool(value)
    if ttype == STRUCT:
        return struct_to_json(value, opts, path)
    if ttype in (LIST, SET):
        et, ea = _split(arg)
        return [to_json(item, et, ea, opts, f"{path}[{i}]") for i, item in enumerate(value)]
    if ttype == MAP:
        (kt, ka), (vt, va) = _split(arg[0]), _split(arg[1])
        out: dict[Any, Any] = {}
        for key, item in value.items():
            k = _key_text(key, kt) if opts.string_keys else key
            if not isinstance(k, str | int | float | bool | bytes) and opts.string_keys:
                raise ConvertError(path, f"map keys of type {_type_name(kt, ka)} have no JSON form")
            out[k] = to_json(item, vt, va, opts, f"{path}[{k!r}]")
        return out
    raise ConvertError(path, f"unsupported Thrift type {ttype}")


def struct_to_json(obj: Any, opts: ThriftConvOptions, path: str = "") -> dict[str, Any]:
    """A thriftpy2 struct as a JSON object: the fields that are set, in IDL order."""
    out: dict[str, Any] = {}
    for _fid, ttype, name, arg, _optional, required in _plan(type(obj))[1]:
        value = getattr(obj, name, None)
        if value is None:
            if required:
                raise ConvertError(join(path, name), f"required field missing in {type(obj).__name__}")
            continue
        out[name] = to_json(value, ttype, arg, opts, join(path, name))
    return out
