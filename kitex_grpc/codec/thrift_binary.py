"""Thrift binary struct bodies read into and written from thriftpy2 structs, by tables, compiled.

This is the compiled build's fast path for :mod:`kitex_grpc.codec.thrift` (it runs as C through
mypyc; :mod:`kitex_grpc.compiled`). It reads and writes what thriftpy2 0.7's Cython binary protocol
(``protocol/cybin/cybin.pyx``) reads and writes, from a table made once per struct type out of its
``thrift_spec``, in one pass where the interpreted path takes two (the bounds walk of
:mod:`~kitex_grpc.codec.thrift_bounds`, then thriftpy2's reader):

* a read builds what thriftpy2's reader builds: a struct made by calling its type, then each field
  of the spec whose wire type matches (``string`` and ``binary`` interchangeable) set as an
  attribute; strings that are not UTF-8 stay bytes; sets come back as lists; a container whose element
  types do not match the spec is skipped and comes back empty (a map's key or value sent as a string
  is taken to be of the spec's type); a field not in the spec, or of another type, is skipped; of a
  field sent twice the last wins;
* a read hands over whatever the walk would refuse: a size the body cannot back, a negative size, a
  type the protocol does not know, nesting past :data:`~kitex_grpc.protocol.thrift_message.MAX_DEPTH`;
  it stops there without naming why, and the walk (:mod:`~kitex_grpc.codec.thrift_bounds`, the one
  home of those rules and their messages) names it on the interpreted path;
* a write emits the set (not ``None``) fields of the struct's spec, in spec order;
* a struct whose ``required`` field is unset (``None``), read or to be written, is handed over, and
  the interpreted path refuses it (:mod:`~kitex_grpc.codec.thrift_required`).

What it hands over raises (:class:`HandOverError`, or the error of the step that failed), and
:mod:`~kitex_grpc.codec.thrift` runs the interpreted path instead, which gives the answer of record,
the value or the error and its message: bad input, and values of types other than the plain ones
(``int``, ``float``, ``str``, ``bytes``, ``list``, ``tuple``, ``set``, ``frozenset``, ``dict`` and the
field's own struct type). So this path never decides an outcome on its own; the property tests in
``tests/ttheader/test_thrift_binary.py`` check that it reads and writes what thriftpy2 does.

Integers are read and written with ``librt.strings`` (mypy's runtime library), which mypyc compiles
to inline C; its reads raise on an offset past the end, so a truncated body cannot be read past.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Final

from librt.strings import (
    BytesWriter,
    read_f64_be,
    read_i16_be,
    read_i32_be,
    read_i64_be,
    write_f64_be,
    write_i16_be,
    write_i32_be,
    write_i64_be,
)

from kitex_grpc.protocol.thrift_message import MAX_DEPTH, skip_value, skip_values

__all__ = ["HandOverError", "StructCodec", "struct_codec", "write_struct"]

# thriftpy2's spec types (thriftpy2.thrift.TType); BINARY is a spec type only, STRING on the wire.
_BOOL: Final = 2
_BYTE: Final = 3
_DOUBLE: Final = 4
_I16: Final = 6
_I32: Final = 8
_I64: Final = 10
_STRING: Final = 11
_STRUCT: Final = 12
_MAP: Final = 13
_SET: Final = 14
_LIST: Final = 15
_BINARY: Final = 18
_SCALARS: Final = (_BOOL, _BYTE, _DOUBLE, _I16, _I32, _I64, _STRING, _BINARY)


class HandOverError(Exception):
    """The fast path hands this body or value over: the interpreted path decides it."""


def _is_string(ttype: int) -> bool:
    return ttype in (_STRING, _BINARY)


class ValueType:
    """How one value (a field, or an element of a container) is read and written."""

    __slots__ = ("codec", "element", "kind", "string", "value", "wire")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.string = _is_string(kind)
        self.wire = _STRING if self.string else kind  # its type byte on the wire
        self.codec: StructCodec | None = None  # a struct's
        self.element: ValueType | None = None  # a list's or set's element, or a map's key
        self.value: ValueType | None = None  # a map's value


class Field:
    """One field of a struct: its attribute name, its type, its 3-byte head (wire type, id), and
    whether the IDL marks it ``required``."""

    __slots__ = ("head", "name", "required", "type")

    def __init__(self, name: str, value_type: ValueType, field_id: int, required: bool = False) -> None:
        # Interned, as attribute names are: set or read with an uninterned name, each attribute
        # access would intern it again and miss the type's attribute cache.
        self.name = sys.intern(name)
        self.type = value_type
        self.head = bytes((value_type.wire, field_id >> 8 & 0xFF, field_id & 0xFF))
        self.required = required


class StructCodec:
    """The table of one thriftpy2 struct type: its fields by id, and in spec order."""

    __slots__ = ("by_id", "in_order", "other_ids", "required", "struct_type")

    def __init__(self, struct_type: Any) -> None:
        self.struct_type = struct_type
        self.by_id: list[Field | None] = []  # ids 0 up to the largest
        self.other_ids: dict[int, Field] = {}  # negative ids
        self.in_order: list[Field] = []
        self.required: list[Field] = []  # the IDL's required fields (empty for most structs)

    def read(self, data: bytes) -> Any:
        """The struct at the start of ``data`` (bytes after its end are ignored); raises on what it
        hands over."""
        return _Reader(data).struct(self, MAX_DEPTH)

    def write(self, obj: Any) -> bytes:
        """``obj`` (of this codec's type) as a struct body; raises on what it hands over."""
        out = BytesWriter()
        _write_struct(out, obj, self, MAX_DEPTH)
        return out.getvalue()

    def _add(self, field_id: int, field: Field) -> None:
        self.in_order.append(field)
        if field.required:
            self.required.append(field)
        if field_id < 0:
            self.other_ids[field_id] = field
            return
        while len(self.by_id) <= field_id:
            self.by_id.append(None)
        self.by_id[field_id] = field


_lock = threading.Lock()
_codecs: dict[Any, StructCodec] = {}  # only whole codecs: it is read without the lock


def struct_codec(struct_type: Any) -> StructCodec:
    """The codec of ``struct_type`` (a thriftpy2 struct class), made once (thread-safe)."""
    codec = _codecs.get(struct_type)
    if codec is not None:
        return codec
    with _lock:
        making: dict[Any, StructCodec] = {}
        codec = _codec(struct_type, making)
        # Published when all are whole; on an error none is, and the next call tries again.
        _codecs.update(making)
        return codec


def write_struct(obj: Any) -> bytes:
    """``obj`` (a thriftpy2 struct) as a struct body; raises on what it hands over."""
    return struct_codec(type(obj)).write(obj)


def _codec(struct_type: Any, making: dict[Any, StructCodec]) -> StructCodec:  # under _lock
    codec = _codecs.get(struct_type) or making.get(struct_type)
    if codec is not None:
        return codec
    codec = making[struct_type] = StructCodec(struct_type)  # first: a struct that contains itself finds it
    for field_id, spec in struct_type.thrift_spec.items():
        # thriftpy2: (type, name, required) or (type, name, type argument, required)
        value_type = _value_type(int(spec[0]), spec[2] if len(spec) > 3 else None, making)
        codec._add(int(field_id), Field(str(spec[1]), value_type, int(field_id), spec[-1] is True))
    return codec


def _value_type(ttype: int, arg: Any, making: dict[Any, StructCodec]) -> ValueType:  # under _lock
    value_type = ValueType(ttype)
    if ttype in _SCALARS:
        return value_type
    if ttype == _STRUCT:
        value_type.codec = _codec(arg, making)
    elif ttype in (_LIST, _SET):
        value_type.element = _argument(arg, making)
    elif ttype == _MAP:
        value_type.element = _argument(arg[0], making)
        value_type.value = _argument(arg[1], making)
    else:
        raise HandOverError(f"thrift: the IDL uses type {ttype}")
    return value_type


def _argument(spec: Any, making: dict[Any, StructCodec]) -> ValueType:  # under _lock
    """A container's type argument: a bare type, or (type, its own argument)."""
    if isinstance(spec, int):
        return _value_type(spec, None, making)
    return _value_type(int(spec[0]), spec[1], making)


# ------------------------------------------------------------------------------------------ reading


class _Reader:
    """One body being read; ``pos`` is the offset of the next byte to read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def struct(self, codec: StructCodec, depth: int) -> Any:
        if depth <= 0:
            raise HandOverError
        obj = codec.struct_type()
        data = self.data
        size = len(data)
        by_id = codec.by_id
        known = len(by_id)
        pos = self.pos
        while True:
            wire = data[pos]  # past the end raises
            if wire == 0:  # STOP
                self.pos = pos + 1
                if codec.required:
                    _check_required(obj, codec)
                return obj
            if pos + 4 > size:  # a field's 3-byte head and at least one byte of value
                raise HandOverError
            field_id = read_i16_be(data, pos + 1)
            pos += 3
            field = by_id[field_id] if 0 <= field_id < known else codec.other_ids.get(field_id)
            if field is not None and (field.type.wire == wire or (field.type.string and wire == _BINARY)):
                self.pos = pos
                setattr(obj, field.name, self.value(field.type, depth - 1))
                pos = self.pos
            else:  # not in the spec, or not of its type: skipped, as thriftpy2 skips it
                pos = skip_value(data, pos, wire, depth - 1)

    def value(self, value_type: ValueType, depth: int) -> Any:
        kind = value_type.kind
        data = self.data
        pos = self.pos
        if value_type.string:
            length = read_i32_be(data, pos)
            start = pos + 4
            end = start + length
            if length < 0 or end > len(data):
                raise HandOverError
            self.pos = end
            raw = data[start:end]
            if kind == _BINARY:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:  # thriftpy2 keeps the bytes
                return raw
        if kind == _I32:
            self.pos = pos + 4
            return read_i32_be(data, pos)
        if kind == _I64:
            self.pos = pos + 8
            return read_i64_be(data, pos)
        if kind == _STRUCT:
            codec = value_type.codec
            assert codec is not None
            return self.struct(codec, depth)
        if kind == _BOOL:
            self.pos = pos + 1
            return data[pos] != 0
        if kind in (_LIST, _SET):
            return self.list(value_type, depth)
        if kind == _MAP:
            return self.map(value_type, depth)
        if kind == _BYTE:
            self.pos = pos + 1
            byte = data[pos]
            return byte - 256 if byte >= 128 else byte
        if kind == _I16:
            self.pos = pos + 2
            return read_i16_be(data, pos)
        self.pos = pos + 8
        return read_f64_be(data, pos)  # DOUBLE: the only kind left (_value_type refuses others)

    def count(self, pos: int) -> int:
        """A container's i32 element count at ``pos``, the last of its head; every element takes at
        least one byte."""
        count = read_i32_be(self.data, pos)
        self.pos = pos = pos + 4
        if count < 0 or count > len(self.data) - pos:
            raise HandOverError
        return count

    def list(self, value_type: ValueType, depth: int) -> list[Any]:
        if depth <= 0:
            raise HandOverError
        element = value_type.element
        assert element is not None
        wire = self.data[self.pos]
        count = self.count(self.pos + 1)
        if wire != element.wire and not (_is_string(wire) and element.string):
            self.pos = skip_values(self.data, self.pos, count, (wire,), depth)
            return []  # thriftpy2 skips the elements
        return [self.value(element, depth - 1) for _ in range(count)]

    def map(self, value_type: ValueType, depth: int) -> dict[Any, Any]:
        if depth <= 0:
            raise HandOverError
        key, value = value_type.element, value_type.value
        assert key is not None and value is not None
        key_wire, value_wire = self.data[self.pos], self.data[self.pos + 1]
        count = self.count(self.pos + 2)
        # thriftpy2 takes a key or value sent as a string to be of the spec's type.
        if _is_string(key_wire):
            key_wire = key.wire
        if _is_string(value_wire):
            value_wire = value.wire
        if key_wire != key.wire or value_wire != value.wire:
            self.pos = skip_values(self.data, self.pos, count, (key_wire, value_wire), depth)
            return {}
        result: dict[Any, Any] = {}
        for _ in range(count):
            k = self.value(key, depth - 1)
            result[k] = self.value(value, depth - 1)
        return result


def _check_required(obj: Any, codec: StructCodec) -> None:
    """Hands over a struct whose required field the body did not set: the interpreted path names it."""
    for field in codec.required:
        if getattr(obj, field.name, None) is None:
            raise HandOverError


# ------------------------------------------------------------------------------------------ writing


def _write_struct(out: BytesWriter, obj: Any, codec: StructCodec, depth: int) -> None:
    if depth <= 0:
        raise HandOverError
    for field in codec.in_order:
        value = getattr(obj, field.name, None)
        if value is None:
            if field.required:  # handed over: the interpreted path names the field
                raise HandOverError
            continue
        out.write(field.head)
        _write_value(out, value, field.type, depth - 1)
    out.append(0)  # STOP


def _write_value(out: BytesWriter, value: Any, value_type: ValueType, depth: int) -> None:
    kind = value_type.kind
    cls = type(value)
    if value_type.string:
        if cls is str:
            raw: bytes = value.encode("utf-8")
        elif cls is bytes:
            raw = value
        else:
            raise HandOverError
        write_i32_be(out, len(raw))
        out.write(raw)
    elif kind in (_I32, _I64, _I16, _BYTE):
        if cls is not int and cls is not bool:
            raise HandOverError
        number: int = value
        if kind == _I32:
            write_i32_be(out, number)  # out of range raises
        elif kind == _I64:
            write_i64_be(out, number)
        elif kind == _I16:
            write_i16_be(out, number)
        elif -128 <= number < 128:
            out.append(number & 0xFF)
        else:
            raise HandOverError
    elif kind == _STRUCT:
        codec = value_type.codec
        assert codec is not None
        if cls is not codec.struct_type:
            raise HandOverError
        _write_struct(out, value, codec, depth)
    elif kind == _BOOL:
        out.append(1 if value else 0)
    elif kind == _MAP:
        key, item = value_type.element, value_type.value
        assert key is not None and item is not None
        if cls is not dict or depth <= 0:
            raise HandOverError
        out.append(key.wire)
        out.append(item.wire)
        write_i32_be(out, len(value))
        for k, v in value.items():
            _write_value(out, k, key, depth - 1)
            _write_value(out, v, item, depth - 1)
    elif kind == _DOUBLE:
        if cls is not float:
            raise HandOverError
        write_f64_be(out, value)
    else:  # LIST or SET
        element = value_type.element
        assert element is not None
        if not (cls is list or cls is tuple or cls is set or cls is frozenset) or depth <= 0:
            raise HandOverError
        out.append(element.wire)
        write_i32_be(out, len(value))
        for v in value:
            _write_value(out, v, element, depth - 1)
