"""The option mechanism shared by client, server and call options.

A ``with_*`` function validates its arguments at once (raising ``ValueError``/``TypeError`` that
names the option) and returns an :class:`Option`: a name, a readable value for diagnostics, and a
function that applies it to the option fields being built. :func:`fold` applies a sequence of
options, in order, to a dataclass's defaults and returns the frozen result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import logging

T = TypeVar("T")


class Option(Generic[T]):
    """One applied ``with_*`` option; ``T`` is the options class it belongs to."""

    __slots__ = ("apply", "name", "value")

    def __init__(self, name: str, value: object, apply: Callable[[dict[str, Any]], None]) -> None:
        self.name = name
        self.value = value
        self.apply = apply

    def __repr__(self) -> str:
        return f"{self.name}({self.value!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class OptionRecord:
    """What an option set, kept for diagnostics (Kitex records every With* option)."""

    name: str
    value: str


def fold(cls: type[T], options: Iterable[Option[T]], kind: str) -> T:
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING:
            fields[f.name] = f.default
        else:
            factory: Callable[[], Any] = f.default_factory  # type: ignore[assignment]
            fields[f.name] = factory()
    records: list[OptionRecord] = []
    for option in options:
        if not isinstance(option, Option):
            raise TypeError(f"expected a {kind} option made by a with_* function, got {option!r}")
        option.apply(fields)
        records.append(OptionRecord(option.name, repr(option.value)))
    fields["records"] = tuple(records)
    return cls(**fields)


def setter(name: str, field: str, value: object) -> Option[Any]:
    def apply(fields: dict[str, Any]) -> None:
        fields[field] = value

    return Option(name, value, apply)


def appender(name: str, field: str, items: tuple[Any, ...]) -> Option[Any]:
    def apply(fields: dict[str, Any]) -> None:
        fields[field] = (*fields[field], *items)

    return Option(name, items, apply)


def callables_appender(name: str, field: str, items: tuple[Any, ...]) -> Option[Any]:
    """An option that appends callables (middlewares, interceptors) to a tuple field, checked now."""
    for item in items:
        check_callable(name, item)
    return appender(name, field, items)


def check_duration(
    option: str, value: float | int | None, *, allow_none: bool = False, allow_zero: bool = True
) -> None:
    """Durations are seconds as float; negative, NaN and infinite values are refused."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{option}: expected seconds as a number, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{option}: duration must be a finite number of seconds {bound}, got {value!r}")


def check_positive_int(option: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{option}: expected a positive integer, got {value!r}")


def check_callable(option: str, value: object) -> None:
    if not callable(value):
        raise TypeError(f"{option}: expected a callable, got {value!r}")


# -- observers: the same on the client and on the server (side names which) ------------------------------


class SuiteValue:
    """How a suite shows in the option records: the suite and the options it applied."""

    __slots__ = ("options", "suite")

    def __init__(self, suite: object, options: tuple[Option[Any], ...]) -> None:
        self.suite = suite
        self.options = options

    def __repr__(self) -> str:
        return f"{self.suite!r}: {', '.join(repr(o) for o in self.options)}"


def tracer_option(tracer: object) -> Option[Any]:
    """``with_tracer``: append ``tracer`` (an object with ``start(ri)`` and ``finish(ri)``) to ``tracers``."""
    if not callable(getattr(tracer, "start", None)) or not callable(getattr(tracer, "finish", None)):
        raise TypeError(f"with_tracer: expected an object with start(ri) and finish(ri), got {tracer!r}")
    return appender("with_tracer", "tracers", (tracer,))


def suite_option(suite: object, options: Iterable[object], side: str) -> Option[Any]:
    """``with_suite``: apply the ``side`` (``"client"`` / ``"server"``) options a suite gave, in order."""
    checked: list[Option[Any]] = []
    for option in options:
        if not isinstance(option, Option):
            raise TypeError(f"with_suite: {suite!r} gave {option!r}, not a {side} option")
        checked.append(option)
    applied = tuple(checked)

    def apply(fields: dict[str, Any]) -> None:
        for option in applied:
            option.apply(fields)

    return Option("with_suite", SuiteValue(suite, applied), apply)


def access_log_option(logger: logging.Logger | None, side: str) -> Option[Any]:
    """``with_access_log``: one log line per finished call on ``side``."""
    from kitex_grpc.observability.logging import AccessLogTracer

    return appender("with_access_log", "tracers", (AccessLogTracer(logger, side=side),))
