"""The struct-body walk of :mod:`kitex_grpc.codec.thrift_bounds`, driven by tables, for the compiled build.

:mod:`~kitex_grpc.codec.thrift_bounds` walks a body before thriftpy2's reader runs (see its docstring
for why and for the rules). Interpreted, the fastest walk is source generated per struct type; this
module walks the same rules from a table per struct type instead, which mypyc compiles to C, where
it costs a fraction of the generated walk. ``thrift_bounds`` uses it when this module runs compiled
(:func:`kitex_grpc.compiled.compiled_modules`) and its generated walkers otherwise; both take the same
bodies and raise the same errors (``tests/ttheader/test_thrift_bounds.py`` compares them on random bytes).

A plan is made per struct type, once, under a lock: each field's key (wire type << 16 | field id, as
its 3-byte head reads) maps to a :class:`Check`. Nested structs get their plans when their parent's is
made (a struct that contains itself finds its own, entered before its fields); a container's element
checks are made on its first walk, as the generated walk makes them.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.thrift_message import FIXED_SIZE, MAX_DEPTH, BytesLike, skip_value, skip_values

__all__ = ["StructPlan", "refuse_negative", "refuse_short", "refuse_too_deep", "struct_plan"]

_BINARY: Final = 18  # thriftpy2's spec type for `binary` fields; written as STRING (11) on the wire
_STRING_TYPE: Final = 11
_STRUCT_TYPE: Final = 12
_MAP_TYPE: Final = 13
_SET_TYPE: Final = 14
_LIST_TYPE: Final = 15

# What a Check checks.
_FIXED: Final = 1  # a number of `size` bytes
_STRING: Final = 2  # an i32 length, then that many bytes
_STRUCT: Final = 3  # a struct of `plan`
_LIST: Final = 4  # a list or set of `types[0]` (type argument `args[0]`)
_MAP: Final = 5  # a map of `types[0]` to `types[1]` (type arguments `args`)


# The refusals, shared with thrift_bounds' generated walk.
def refuse_short() -> ProtocolError:
    return ProtocolError("thrift: a declared size runs past the end of the body")


def refuse_too_deep() -> ProtocolError:
    return ProtocolError("thrift: depth limit exceeded")


def refuse_negative() -> ProtocolError:
    return ProtocolError("thrift: negative size")


def _is_string(ttype: int) -> bool:
    return ttype in (_STRING_TYPE, _BINARY)


class Check:
    """How one value (a field, or an element of a container) is checked."""

    __slots__ = ("args", "elements", "elements_size", "kind", "plan", "size", "types")

    def __init__(self, kind: int, size: int = 0) -> None:
        self.kind = kind
        self.size = size
        self.plan: StructPlan | None = None
        self.types: tuple[int, int] = (0, 0)
        self.args: tuple[Any, Any] = (None, None)
        # A container's element checks (one, or key and value), made on its first walk, and their
        # total size when all are numbers (0 otherwise: each element is walked).
        self.elements: list[Check] | None = None
        self.elements_size = 0


class StructPlan:
    """The checks of one struct type's fields, by the key their field head reads as."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[int, Check] = {}

    def check(self, data: BytesLike) -> int:
        """Raise :class:`ProtocolError` unless ``data`` starts with a whole struct of this plan's type
        that the reader can read without running past its end; return the offset just past it."""
        return _walk_struct(data if isinstance(data, bytes) else bytes(data), 0, MAX_DEPTH, self)


_lock = threading.RLock()
_plans: dict[Any, StructPlan] = {}


def struct_plan(struct_type: Any) -> StructPlan:
    """The plan of ``struct_type`` (a thriftpy2 struct class), made once (thread-safe)."""
    with _lock:
        return _plan(struct_type)


def _plan(struct_type: Any) -> StructPlan:  # under _lock
    plan = _plans.get(struct_type)
    if plan is not None:
        return plan
    plan = _plans[struct_type] = StructPlan()  # entered first: a struct that contains itself finds it
    try:
        for field_id, spec in struct_type.thrift_spec.items():
            # thriftpy2: (type, name, required) or (type, name, type argument, required)
            ttype = int(spec[0])
            check = _check(ttype, spec[2] if len(spec) > 3 else None)
            wire_types = (_STRING_TYPE, _BINARY) if _is_string(ttype) else (ttype,)
            for wire in wire_types:
                plan.fields[wire << 16 | int(field_id) & 0xFFFF] = check
    except BaseException:
        del _plans[struct_type]  # an IDL type the protocol cannot carry: no half-made plan stays
        raise
    return plan


def _split(spec: Any) -> tuple[int, Any]:
    """A container's type argument: a bare type, or (type, its own argument)."""
    return (spec, None) if isinstance(spec, int) else (int(spec[0]), spec[1])


def _check(ttype: int, arg: Any) -> Check:  # under _lock
    fixed = FIXED_SIZE.get(ttype)
    if fixed is not None:
        return Check(_FIXED, fixed)
    if _is_string(ttype):
        return Check(_STRING)
    if ttype == _STRUCT_TYPE:
        check = Check(_STRUCT)
        check.plan = _plan(arg)
        return check
    if ttype in (_LIST_TYPE, _SET_TYPE):
        check = Check(_LIST)
        elem_type, elem_arg = _split(arg)
        check.types = (elem_type, 0)
        check.args = (elem_arg, None)
        return check
    if ttype == _MAP_TYPE:
        check = Check(_MAP)
        key_type, key_arg = _split(arg[0])
        value_type, value_arg = _split(arg[1])
        check.types = (key_type, value_type)
        check.args = (key_arg, value_arg)
        return check
    raise ProtocolError(f"thrift: the IDL uses type {ttype}, which the binary protocol cannot carry")


def _elements(check: Check) -> list[Check]:
    """A container's element checks, made on its first walk (an element struct may be new then)."""
    elements = check.elements
    if elements is not None:
        return elements
    with _lock:
        if check.elements is not None:  # another thread made them while this one waited
            return check.elements
        elements = [_check(check.types[0], check.args[0])]
        if check.kind == _MAP:
            elements.append(_check(check.types[1], check.args[1]))
        size = 0
        for element in elements:
            if element.kind != _FIXED:
                size = 0
                break
            size += element.size
        check.elements_size = size  # before elements: a walk that sees elements sees their size
        check.elements = elements
    return elements


def _i32(data: bytes, offset: int) -> int:
    value = data[offset] << 24 | data[offset + 1] << 16 | data[offset + 2] << 8 | data[offset + 3]
    return value - (1 << 32) if value >= 1 << 31 else value


def _i8(data: bytes, offset: int) -> int:
    value = data[offset]
    return value - 256 if value >= 128 else value


def _walk_struct(data: bytes, offset: int, depth: int, plan: StructPlan) -> int:
    if depth <= 0:
        raise refuse_too_deep()
    size = len(data)
    fields = plan.fields
    while True:
        if offset >= size:
            raise refuse_short()
        wire = data[offset]
        if wire == 0:  # STOP
            return offset + 1
        if offset + 4 > size:  # a field's 3-byte head and at least one byte of value
            raise refuse_short()
        key = wire << 16 | data[offset + 1] << 8 | data[offset + 2]
        offset += 3
        check = fields.get(key)
        if check is None:  # not in the spec, or not of its type: the reader skips it, and so do we
            offset = skip_value(data, offset, wire, depth - 1)
        else:
            offset = _walk_value(data, offset, check, depth - 1, size)


def _walk_value(data: bytes, offset: int, check: Check, depth: int, size: int) -> int:
    """The offset past one value of ``check`` at ``offset``; ``depth`` is the value's own."""
    kind = check.kind
    if kind == _FIXED:
        offset += check.size
    elif kind == _STRING:
        if offset + 4 > size:
            raise refuse_short()
        length = _i32(data, offset)
        if length < 0:
            raise refuse_negative()
        offset += 4 + length
    elif kind == _STRUCT:
        plan = check.plan
        assert plan is not None
        return _walk_struct(data, offset, depth, plan)
    else:
        return _walk_container(data, offset, check, depth, size)
    if offset > size:
        raise refuse_short()
    return offset


def _walk_container(data: bytes, offset: int, check: Check, depth: int, size: int) -> int:
    """A list, set or map: its head, then its elements, or a skip where the reader skips them."""
    if depth <= 0:
        raise refuse_too_deep()
    head = 5 if check.kind == _LIST else 6  # element type(s) as signed bytes, then an i32 count
    if offset + head > size:
        raise refuse_short()
    count = _i32(data, offset + head - 4)
    skipped: tuple[int, ...] | None = None  # the wire types, when the reader skips the elements
    if check.kind == _LIST:
        wire_type, elem_type = _i8(data, offset), check.types[0]
        if wire_type != elem_type and not (_is_string(wire_type) and _is_string(elem_type)):
            skipped = (wire_type,)
    else:
        wire_key, wire_value = _i8(data, offset), _i8(data, offset + 1)
        key_type, value_type = check.types
        # The reader takes a key or value declared as a string to be of the spec's type.
        if _is_string(wire_key):
            wire_key = key_type
        if _is_string(wire_value):
            wire_value = value_type
        if wire_key != key_type or wire_value != value_type:
            skipped = (wire_key, wire_value)
    offset += head
    if skipped is not None:
        return skip_values(data, offset, count, skipped, depth)
    return _walk_elements(data, offset, count, check, depth - 1, size)


def _walk_elements(data: bytes, offset: int, count: int, check: Check, depth: int, size: int) -> int:
    if count < 0:
        raise refuse_negative()
    elements = _elements(check)
    fixed = check.elements_size
    if fixed:  # numbers only: no walk needed
        offset += count * fixed
        if offset > size:
            raise refuse_short()
        return offset
    if count > size - offset:  # every value takes at least one byte
        raise refuse_short()
    for _ in range(count):
        for element in elements:
            offset = _walk_value(data, offset, element, depth, size)
    return offset
