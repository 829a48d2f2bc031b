"""Merging Prometheus text expositions (format 0.0.4) of several worker processes into one.

Sans-IO and independent of which series exist: samples with the same name and the same label set
are summed, whatever the family. For counters and histograms (``_bucket``, ``_sum``, ``_count``) the
sum is the whole server's count. Gauges are summed too: the series kitex-grpc exports as gauges
(calls in flight, connection pool sizes) are per-process amounts whose sum is the server's amount;
a gauge that is not an amount (a timestamp, a version) is better exported with a per-process label,
which keeps the samples apart. Timestamps are dropped; the first ``# HELP`` and ``# TYPE`` of a
family win. Families and samples keep the order they were first seen in.

:class:`Exposition` also keeps the last counts of workers that have exited (``retire``), so merged
counters and histograms do not go down when a worker is restarted or replaced (Prometheus would
read the drop as a counter reset).
"""

from __future__ import annotations

import math
import re

__all__ = ["Exposition", "merge"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_gsum", "_gcount", "_info")
_MONOTONIC = ("counter", "histogram", "summary")


class _Family:
    __slots__ = ("help", "kind", "samples")

    def __init__(self) -> None:
        self.help: str | None = None
        self.kind: str | None = None
        # (sample name, sorted label pairs) -> [sample name with its label text, value]
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], list[object]] = {}


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    inner = text[1:-1]
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(inner):
        m = _LABEL.match(inner, pos)
        if m is None:
            raise ValueError(f"bad label set {text!r}")
        pairs.append((m.group(1), m.group(2)))
        pos = m.end()
    return tuple(sorted(pairs))


def _format(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class Exposition:
    """Families summed from several expositions (:meth:`add`), plus the retired workers' counts."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self.skipped = 0  # lines that were not understood (dropped)

    def _family_of(self, sample: str, current: str | None) -> _Family:
        if current is not None and sample.startswith(current) and sample[len(current) :] in ("", *_SUFFIXES):
            return self._families[current]
        return self._families.setdefault(sample, _Family())

    def add(self, text: str, *, monotonic_only: bool = False) -> None:
        """Sum one exposition into this one (``monotonic_only``: counters, histograms and summaries)."""
        current: str | None = None
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    current = parts[2]
                    family = self._families.setdefault(current, _Family())
                    rest = parts[3] if len(parts) > 3 else ""
                    if parts[1] == "HELP" and family.help is None:
                        family.help = rest
                    elif parts[1] == "TYPE" and family.kind is None:
                        family.kind = rest.strip()
                continue
            m = _SAMPLE.match(line)
            if m is None:
                self.skipped += 1
                continue
            name, label_text, value_text = m.group(1), m.group(2) or "", m.group(3)
            try:
                value = float(value_text)
                key = (name, _labels(label_text) if label_text else ())
            except ValueError:
                self.skipped += 1
                continue
            family = self._family_of(name, current)
            if monotonic_only and family.kind not in _MONOTONIC:
                continue
            entry = family.samples.get(key)
            if entry is None:
                family.samples[key] = [name + label_text, value]
            else:
                entry[1] = float(entry[1]) + value  # type: ignore[arg-type]

    def copy(self) -> Exposition:
        other = Exposition()
        for name, family in self._families.items():
            f = other._families.setdefault(name, _Family())
            f.help, f.kind = family.help, family.kind
            f.samples = {k: list(v) for k, v in family.samples.items()}
        return other

    def render(self) -> str:
        out: list[str] = []
        for name, family in self._families.items():
            if not family.samples and family.kind is None:
                continue
            if family.help is not None:
                out.append(f"# HELP {name} {family.help}")
            if family.kind is not None:
                out.append(f"# TYPE {name} {family.kind}")
            out.extend(f"{head} {_format(float(v))}" for head, v in family.samples.values())  # type: ignore[arg-type]
        return "\n".join(out) + "\n" if out else ""


def merge(texts: list[str], retired: Exposition | None = None) -> str:
    """One exposition: every text's samples summed, plus ``retired`` (the exited workers' counts)."""
    total = retired.copy() if retired is not None else Exposition()
    for text in texts:
        total.add(text)
    return total.render()
