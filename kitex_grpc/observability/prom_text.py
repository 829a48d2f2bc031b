"""Counters, gauges and histograms rendered as the Prometheus text exposition format 0.0.4 (sans-IO).

Just enough of a Prometheus client for the Kitex-compatible series (:mod:`.kitex_prom`), with the
output shaped as Go's ``client_golang`` writes it (``prometheus/common/expfmt/text_create.go``), so
that a dashboard or recording rule written against a Go Kitex service matches ours byte for byte:

- families sorted by name, samples within a family sorted by their label values, label names
  sorted within a sample (``le`` last on buckets);
- numbers formatted as Go's ``strconv.FormatFloat(f, 'g', -1, 64)``: ``5000``, ``250000``, ``1e+06``,
  ``+Inf``;
- counters keep the name they were given (``kitex_client_throughput``, no ``_total`` added).

Nothing here locks: every update happens on the event loop thread that runs the calls.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

__all__ = ["Counter", "Gauge", "Histogram", "Registry", "go_float"]

LabelValues = tuple[str, ...]


def go_float(value: float) -> str:
    """``value`` as Go's ``strconv.FormatFloat(value, 'g', -1, 64)`` writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(float(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    point = len(digit_tuple) + exponent  # digits before the decimal point ("dp" in strconv)
    # strconv's %g with the shortest precision (ftoa.go): %e when the exponent is < -4 or >= 6.
    exp = point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Family:
    kind = ""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        # Label names sorted as client_golang does; _order maps sorted position -> given position.
        self._order = sorted(range(len(self.label_names)), key=lambda i: self.label_names[i])

    def _labels(self, values: LabelValues, extra: str = "") -> str:
        pairs = [f'{self.label_names[i]}="{_escape_value(values[i])}"' for i in self._order]
        if extra:
            pairs.append(extra)
        return "{" + ",".join(pairs) + "}" if pairs else ""

    def _sort_key(self, values: LabelValues) -> LabelValues:
        return tuple(values[i] for i in self._order)

    def lines(self) -> list[str]:
        raise NotImplementedError


class Counter(_Family):
    """A counter family: one monotonically increasing value per label-value tuple."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        super().__init__(name, help_text, label_names)
        self.values: dict[LabelValues, float] = {}

    def inc(self, labels: LabelValues, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def lines(self) -> list[str]:
        items = sorted(self.values.items(), key=lambda kv: self._sort_key(kv[0]))
        return [f"{self.name}{self._labels(k)} {go_float(v)}" for k, v in items]


class Gauge(_Family):
    """A family whose samples are read from ``collect`` at each scrape (nothing stored here).

    ``kind`` is ``gauge``, or ``counter`` for counts kept elsewhere.
    """

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str],
        collect: Callable[[], Iterable[tuple[LabelValues, float]]],
        *,
        kind: str = "gauge",
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.collect = collect
        self.kind = kind

    def lines(self) -> list[str]:
        items = sorted(self.collect(), key=lambda kv: self._sort_key(kv[0]))
        return [f"{self.name}{self._labels(k)} {go_float(v)}" for k, v in items]


class Histogram(_Family):
    """A histogram family with fixed upper bounds (``+Inf`` is implied)."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, label_names: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help_text, label_names)
        bounds = [float(b) for b in buckets]
        if not bounds or any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ValueError(
                f"histogram {name}: buckets must be non-empty and strictly increasing, got {buckets!r}"
            )
        if math.isinf(bounds[-1]):
            bounds.pop()
        self.bounds = tuple(bounds)
        # per label values: [count per bucket (non-cumulative, +Inf last), sum]
        self.values: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, labels: LabelValues, value: float) -> None:
        entry = self.values.get(labels)
        if entry is None:
            entry = self.values[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        # A value equal to a bound falls in that bound's bucket (le: "less than or equal").
        entry[0][bisect.bisect_left(self.bounds, value)] += 1
        entry[1][0] += value

    def lines(self) -> list[str]:
        out: list[str] = []
        for labels, (counts, total) in sorted(self.values.items(), key=lambda kv: self._sort_key(kv[0])):
            cumulative = 0
            for bound, count in zip([*self.bounds, math.inf], counts, strict=True):
                cumulative += count
                le = f'le="{go_float(bound)}"'
                out.append(f"{self.name}_bucket{self._labels(labels, le)} {cumulative}")
            out.append(f"{self.name}_sum{self._labels(labels)} {go_float(total[0])}")
            out.append(f"{self.name}_count{self._labels(labels)} {cumulative}")
        return out


class Registry:
    """A set of families rendered together; a family's name is unique within a registry."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}

    def register(self, family: _Family) -> None:
        if family.name in self.families:
            raise ValueError(f"a metric named {family.name!r} is already registered")
        self.families[family.name] = family

    def render(self) -> str:
        """The text exposition of every family that has samples (client_golang omits empty ones)."""
        out: list[str] = []
        for name in sorted(self.families):
            family = self.families[name]
            lines = family.lines()
            if not lines:
                continue
            out.append(f"# HELP {name} {_escape_help(family.help)}")
            out.append(f"# TYPE {name} {family.kind}")
            out.extend(lines)
        return "\n".join(out) + "\n" if out else ""
