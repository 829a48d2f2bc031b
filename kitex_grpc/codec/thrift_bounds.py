"""Checks, before thriftpy2's Cython reader runs, that a binary struct body holds what it will read.

That reader trusts every size it reads (thriftpy2 0.7, ``protocol/cybin/cybin.pyx``):

* a string or binary of declared length N allocates N bytes and returns them, whatever is left, so a
  few bytes declaring 2 GiB cost 2 GiB and seconds of copying;
* a list, set or map of declared size N loops N times, also past the end of the input, so 13 bytes
  declaring 2**31 - 1 elements take the event loop for tens of seconds;
* an element type it does not know is skipped by reading nothing, so such a container loops N times
  even over a body that is long enough.

:func:`body_check` gives a check that walks a body first, the way the reader will, without
building anything, and raises :class:`ProtocolError` at the first size or type that the body cannot
back. A field whose id is in the struct's spec with the same wire type (string and binary
interchangeable) is checked as the spec says; a map whose key or value is declared as a string is
checked as the spec's key or value type, because the reader reads it so; anything else is checked by
its wire type, the way the reader skips it (:func:`~kitex_grpc.protocol.thrift_message.skip_value`,
which refuses unknown types, negative sizes and nesting past 64, as Kitex's own decoder refuses
them). Bytes after the struct's end are left alone: Kitex ignores them.

Each struct type gets a walker of its own, generated from its spec when its check is made: one loop over the
fields whose branches compare the field's (wire type, id) with integer constants and check numbers,
strings and nested structs inline. A generic walker that looked each field up in a table cost 2.6
times as much. The generated source holds only integer constants and generated names, nothing from
the IDL's text. The walk still costs Python time per field, and per element of a container of strings,
structs or containers; a container of numbers is checked without looking at its elements.

This walk is the one home of the bounds rules and of their refusals. The compiled build's typed
reader (:mod:`kitex_grpc.codec.thrift_binary`) reads a well-formed body in one pass without it, and
hands any body it doubts over to the interpreted path, whose walk here decides the outcome and the
error; so this walk runs on bad input (and bodies that leave a required field unset) only.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.thrift_message import FIXED_SIZE, MAX_DEPTH, TType, skip_value, skip_values

__all__ = ["body_check"]

_BINARY = 18  # thriftpy2's spec type for `binary` fields; written as STRING (11) on the wire
_STRINGS = (int(TType.STRING), _BINARY)
_LIST_HEAD = struct.Struct(">bi")
_MAP_HEAD = struct.Struct(">bbi")
_unpack_i32 = struct.Struct(">i").unpack_from

# A walk: (data, offset, depth) -> the offset just past the value that starts at offset.
Walk: TypeAlias = Callable[[bytes, int, int], int]


class StructWalk(Protocol):
    """A generated struct walker; from the start of a body it is the whole check."""

    def __call__(self, data: bytes, offset: int = 0, depth: int = MAX_DEPTH) -> int: ...


# How one element of a container is checked: a positive int is its fixed size, _STRING a
# length-prefixed string, a walk anything else.
Check: TypeAlias = "int | Walk"
_STRING = 0


def _short() -> ProtocolError:
    return ProtocolError("thrift: a declared size runs past the end of the body")


def _too_deep() -> ProtocolError:
    return ProtocolError("thrift: depth limit exceeded")


def _negative() -> ProtocolError:
    return ProtocolError("thrift: negative size")


# What the generated walkers see: these helpers, each other (by generated name) and the container walks.
_generated: dict[str, Any] = {
    "_short": _short,
    "_too_deep": _too_deep,
    "_negative": _negative,
    "_skip": skip_value,
    "_u32": struct.Struct(">I").unpack_from,
    "_i32": _unpack_i32,
}
# Generation runs under _lock; a walker is in _ready once it and every walker it calls exist.
_lock = threading.RLock()
_names: dict[type, str] = {}  # struct type -> its walker's name in _generated (entered before it exists)
_ready: dict[type, StructWalk] = {}


def body_check(struct_type: type) -> Callable[[bytes], int]:
    """The check for ``struct_type`` bodies: ``check(data)`` raises :class:`ProtocolError` unless
    ``data`` starts with a ``struct_type`` that thriftpy2's reader can read without running past
    ``data``'s end, and returns the offset just past it. Made once per type (thread-safe)."""
    return _struct_walk(struct_type)


def _struct_walk(struct_type: Any) -> StructWalk:
    with _lock:
        walk = _ready.get(struct_type)
        if walk is None:
            walk = _ready[struct_type] = _generated[_walker_name(struct_type)]
        return walk


def _walker_name(struct_type: Any) -> str:  # under _lock
    name = _names.get(struct_type)
    if name is None:
        # Named before its source is made: a struct that contains itself calls itself by this name.
        name = _names[struct_type] = f"_walk_struct_{len(_names)}"
        exec(_struct_source(name, struct_type), _generated)  # integer constants and our names only
    return name


def _struct_source(name: str, struct_type: Any) -> str:
    lines = [
        f"def {name}(data, offset=0, depth={MAX_DEPTH}):",
        "    if depth <= 0:",
        "        raise _too_deep()",
        "    size = len(data)",
        "    while True:",
        "        if offset >= size:",
        "            raise _short()",
        "        if data[offset] == 0:  # STOP",
        "            return offset + 1",
        "        if offset + 4 > size:  # a field's 3-byte head and at least one byte of value",
        "            raise _short()",
        "        key = _u32(data, offset)[0] >> 8  # wire type << 16 | field id",
        "        offset += 3",
    ]
    branch = "if"
    for field_id, spec in struct_type.thrift_spec.items():
        # thriftpy2: (type, name, required) or (type, name, type argument, required)
        ttype = int(spec[0])
        wire_types = _STRINGS if ttype in _STRINGS else (ttype,)
        keys = " or ".join(f"key == {wire << 16 | int(field_id) & 0xFFFF}" for wire in wire_types)
        lines.append(f"        {branch} {keys}:")
        lines.extend(
            f"            {line}" for line in _field_source(ttype, spec[2] if len(spec) > 3 else None)
        )
        branch = "elif"
    # Not in the spec, or not of its type: the reader skips it, and so do we.
    if branch == "elif":
        lines += ["        else:", "            offset = _skip(data, offset, key >> 16, depth - 1)"]
    else:
        lines.append("        offset = _skip(data, offset, key >> 16, depth - 1)")
    return "\n".join(lines) + "\n"


def _field_source(ttype: int, arg: Any) -> list[str]:  # under _lock
    fixed = FIXED_SIZE.get(ttype)
    if fixed is not None:
        return [f"offset += {fixed}", "if offset > size:", "    raise _short()"]
    if ttype in _STRINGS:
        return [
            "if offset + 4 > size:",
            "    raise _short()",
            "length = _i32(data, offset)[0]",
            "if length < 0:",
            "    raise _negative()",
            "offset += 4 + length",
            "if offset > size:",
            "    raise _short()",
        ]
    if ttype == TType.STRUCT:
        return [f"offset = {_walker_name(arg)}(data, offset, depth - 1)"]
    name = f"_walk_container_{len(_generated)}"
    _generated[name] = _container_walk(ttype, arg)
    return [f"offset = {name}(data, offset, depth - 1)"]


def _split(spec: Any) -> tuple[int, Any]:
    """A container's type argument: a bare type, or (type, its own argument)."""
    return (spec, None) if isinstance(spec, int) else (spec[0], spec[1])


def _check(ttype: int, arg: Any) -> Check:
    fixed = FIXED_SIZE.get(ttype)
    if fixed is not None:
        return fixed
    if ttype in _STRINGS:
        return _STRING
    if ttype == TType.STRUCT:
        return _struct_walk(arg)
    return _container_walk(ttype, arg)


def _container_walk(ttype: int, arg: Any) -> Walk:
    if ttype in (TType.LIST, TType.SET):
        return _list_walk(*_split(arg))
    if ttype == TType.MAP:
        return _map_walk(_split(arg[0]), _split(arg[1]))
    raise ProtocolError(f"thrift: the IDL uses type {ttype}, which the binary protocol cannot carry")


def _walk_value(data: bytes, offset: int, check: Check, depth: int) -> int:
    if check == _STRING:
        if offset + 4 > len(data):
            raise _short()
        length: int = _unpack_i32(data, offset)[0]
        if length < 0:
            raise _negative()
        offset += 4 + length
    elif isinstance(check, int):
        offset += check
    else:
        return check(data, offset, depth)
    if offset > len(data):
        raise _short()
    return offset


def _elements(*checks: Check) -> tuple[tuple[Check, ...], int]:
    """A container's element (or key and value) checks, and their total size if all are numbers."""
    numbers = all(isinstance(c, int) and c != _STRING for c in checks)
    return checks, sum(c for c in checks if isinstance(c, int)) if numbers else 0


def _walk_values(
    data: bytes, offset: int, count: int, elements: tuple[tuple[Check, ...], int], depth: int
) -> int:
    if count < 0:
        raise _negative()
    checks, fixed = elements
    if fixed:  # numbers only: no walk needed
        offset += count * fixed
        if offset > len(data):
            raise _short()
        return offset
    if count > len(data) - offset:  # every value takes at least one byte
        raise _short()
    for _ in range(count):
        for check in checks:
            offset = _walk_value(data, offset, check, depth)
    return offset


def _container_head(data: bytes, offset: int, depth: int, head: struct.Struct) -> tuple[Any, ...]:
    if depth <= 0:
        raise _too_deep()
    if offset + head.size > len(data):
        raise _short()
    return head.unpack_from(data, offset)


def _list_walk(elem_type: int, elem_arg: Any) -> Walk:
    elem: tuple[tuple[Check, ...], int] | None = None  # made on first use: it may be a struct not yet made

    def walk(data: bytes, offset: int, depth: int) -> int:
        nonlocal elem
        wire_type, count = _container_head(data, offset, depth, _LIST_HEAD)
        offset += _LIST_HEAD.size
        if wire_type != elem_type and not (wire_type in _STRINGS and elem_type in _STRINGS):
            return skip_values(data, offset, count, (wire_type,), depth)  # the reader skips them
        if elem is None:
            elem = _elements(_check(elem_type, elem_arg))
        return _walk_values(data, offset, count, elem, depth - 1)

    return walk


def _map_walk(key: tuple[int, Any], value: tuple[int, Any]) -> Walk:
    key_type, value_type = key[0], value[0]
    entry: tuple[tuple[Check, ...], int] | None = None

    def walk(data: bytes, offset: int, depth: int) -> int:
        nonlocal entry
        wire_key, wire_value, count = _container_head(data, offset, depth, _MAP_HEAD)
        offset += _MAP_HEAD.size
        # The reader takes a key or value declared as a string to be of the spec's type.
        if wire_key in _STRINGS:
            wire_key = key_type
        if wire_value in _STRINGS:
            wire_value = value_type
        if wire_key != key_type or wire_value != value_type:
            return skip_values(data, offset, count, (wire_key, wire_value), depth)
        if entry is None:
            entry = _elements(_check(*key), _check(*value))
        return _walk_values(data, offset, count, entry, depth - 1)

    return walk
