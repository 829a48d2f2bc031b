"""Required fields of Thrift structs: refused when unset, on encode and on decode.

Kitex's generated readers refuse a struct whose ``required`` field was not read ("required field
r_string is not set"), and Apache Thrift's generated ``validate()`` refuses to write one whose required
field is unset; thriftpy2 checks neither. :func:`required_check` gives the check for one struct type:
``None`` when no struct reachable from it (through struct fields and list, set and map elements) has a
required field, so IDLs without any pay nothing; otherwise a function that walks only the fields that
can lead to one, from a plan made once per type. A field counts as set when it is not ``None`` (after a
read, a required field the body did not carry is ``None`` unless the IDL gives it a default).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from kitex_grpc.errors import ProtocolError

__all__ = ["RequiredFieldError", "required_check"]

# thriftpy2's spec types (thriftpy2.thrift.TType)
_STRUCT: Final = 12
_MAP: Final = 13
_SET: Final = 14
_LIST: Final = 15


class RequiredFieldError(ProtocolError):
    """A required field is not set; ``field`` is its name and ``struct`` its struct's."""

    def __init__(self, field: str, struct: str) -> None:
        super().__init__(f"required field {field} of {struct} is not set")
        self.field = field
        self.struct = struct


class _Value:
    """How to look for required fields inside one value: a struct's plan, or a container's elements."""

    __slots__ = ("element", "kind", "plan", "value")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.plan: _Plan | None = None  # a struct's
        self.element: _Value | None = None  # a list's or set's element, or a map's key
        self.value: _Value | None = None  # a map's value


class _Plan:
    """One struct type: its required field names, and the fields worth looking into."""

    __slots__ = ("name", "nested", "required")

    def __init__(self, name: str) -> None:
        self.name = name
        self.required: list[str] = []
        self.nested: list[tuple[str, _Value]] = []

    def check(self, obj: Any) -> None:
        for field in self.required:
            if getattr(obj, field, None) is None:
                raise RequiredFieldError(field, self.name)
        for field, value_type in self.nested:
            value = getattr(obj, field, None)
            if value is not None:
                plan = value_type.plan
                if plan is not None:  # a struct: no call of _check_value
                    plan.check(value)
                else:
                    _check_value(value, value_type)


def _check_value(value: Any, value_type: _Value) -> None:
    kind = value_type.kind
    if kind == _STRUCT:
        plan = value_type.plan
        assert plan is not None
        plan.check(value)
    elif kind == _MAP:
        key, item = value_type.element, value_type.value
        for k, v in value.items():
            if key is not None and k is not None:
                _check_value(k, key)
            if item is not None and v is not None:
                _check_value(v, item)
    else:  # LIST or SET
        element = value_type.element
        assert element is not None
        for v in value:
            if v is not None:
                _check_value(v, element)


_lock = threading.Lock()
_checks: dict[Any, Callable[[Any], None] | None] = {}


def required_check(struct_type: Any) -> Callable[[Any], None] | None:
    """The check of ``struct_type`` values (raises :class:`RequiredFieldError`), or ``None`` when
    nothing reachable from the type is required. Made once per type (thread-safe)."""
    if struct_type in _checks:
        return _checks[struct_type]
    with _lock:
        plans: dict[Any, _Plan] = {}
        root = _plan(struct_type, plans)
        relevant = _relevant(plans)
        for plan in plans.values():
            plan.nested = [(name, v) for name, v in plan.nested if _leads(v, relevant)]
        check = root.check if root in relevant else None
        _checks[struct_type] = check
        return check


def _plan(struct_type: Any, plans: dict[Any, _Plan]) -> _Plan:  # under _lock
    plan = plans.get(struct_type)
    if plan is not None:
        return plan
    plan = plans[struct_type] = _Plan(struct_type.__name__)  # first: a struct that contains itself
    for spec in struct_type.thrift_spec.values():
        # thriftpy2: (type, name, required) or (type, name, type argument, required)
        name = str(spec[1])
        if spec[-1] is True:
            plan.required.append(name)
        value_type = _value(int(spec[0]), spec[2] if len(spec) > 3 else None, plans)
        if value_type is not None:
            plan.nested.append((name, value_type))
    return plan


def _value(ttype: int, arg: Any, plans: dict[Any, _Plan]) -> _Value | None:  # under _lock
    """What to look into for a value of this type: ``None`` for scalars, which hold no struct."""
    if ttype == _STRUCT:
        value_type = _Value(ttype)
        value_type.plan = _plan(arg, plans)
        return value_type
    if ttype in (_LIST, _SET):
        element = _argument(arg, plans)
        if element is None:
            return None
        value_type = _Value(ttype)
        value_type.element = element
        return value_type
    if ttype == _MAP:
        key, item = _argument(arg[0], plans), _argument(arg[1], plans)
        if key is None and item is None:
            return None
        value_type = _Value(ttype)
        value_type.element = key
        value_type.value = item
        return value_type
    return None


def _argument(spec: Any, plans: dict[Any, _Plan]) -> _Value | None:  # under _lock
    """A container's type argument: a bare type, or (type, its own argument)."""
    if isinstance(spec, int):
        return _value(spec, None, plans)
    return _value(int(spec[0]), spec[1], plans)


def _leads(value_type: _Value | None, relevant: set[_Plan]) -> bool:
    """Whether a value of this type can hold a struct with a required field."""
    if value_type is None:
        return False
    if value_type.plan is not None:
        return value_type.plan in relevant
    return _leads(value_type.element, relevant) or _leads(value_type.value, relevant)


def _relevant(plans: dict[Any, _Plan]) -> set[_Plan]:
    """The plans with a required field, or a field that can lead to one (a fixed point: structs may
    contain each other)."""
    relevant = {plan for plan in plans.values() if plan.required}
    changed = True
    while changed:
        changed = False
        for plan in plans.values():
            if plan not in relevant and any(_leads(v, relevant) for _, v in plan.nested):
                relevant.add(plan)
                changed = True
    return relevant
