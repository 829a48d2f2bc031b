"""Results: the table on stdout, bench/results/latest.json, and the cProfile summary."""

from __future__ import annotations

import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import registry

SCHEMA = 2  # 2: rows carry their round; a summary over the rounds


@dataclass
class Row:
    scenario: str
    payload: int
    impl: str
    baseline: str | None
    unit: str
    rate: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    mean_us: float = 0.0
    count: int = 0
    seconds: float = 0.0
    errors: int = 0
    first_error: str = ""
    failed: str = ""  # why the case produced no figures (crash, timeout), '' if it ran
    ratio: float | None = None  # rate / baseline's rate, for kitex impls whose baseline ran
    server_cpu_us: float | None = None  # CPU per call in the window, whole server process
    client_cpu_us: float | None = None  # CPU per call in the window, whole client process
    round: int = 1  # with --rounds N, which pass over the cases this row came from (1..N)


@dataclass
class Summary:
    """One case over every round: medians, and the spread of the per-round ratios."""

    scenario: str
    payload: int
    impl: str
    baseline: str | None
    unit: str
    rounds: int  # rounds in which the case produced figures
    rate: float  # median
    rate_min: float
    rate_max: float
    server_cpu_us: float | None  # medians
    client_cpu_us: float | None
    ratio: float | None = None  # median of the per-round ratios (each against the same round's baseline)
    ratio_min: float | None = None
    ratio_max: float | None = None


@dataclass
class Run:
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    summary: list[Summary] = field(default_factory=list)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "versions": {
            d: _version(d) for d in ("grpcio", "grpcio-tools", "protobuf", "grpclib", "h2", "thriftpy2")
        },
        "git_commit": _git_commit(),
        # Other work on the machine skews the figures: compare these across runs before trusting a ratio.
        "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def fill_ratios(rows: list[Row]) -> None:
    """Each kitex row's ratio to its baseline's row of the same round (run next to it in time)."""
    by_key = {(r.scenario, r.payload, r.impl, r.round): r for r in rows if not r.failed}
    for r in rows:
        if r.baseline is None or r.failed:
            continue
        base = by_key.get((r.scenario, r.payload, r.baseline, r.round))
        if base is not None and base.rate > 0:
            r.ratio = r.rate / base.rate


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summarize(rows: list[Row]) -> list[Summary]:
    """One :class:`Summary` per case, in first-run order, over the rounds it ran without failing."""
    cases: dict[tuple[str, int, str], list[Row]] = {}
    for r in rows:
        cases.setdefault((r.scenario, r.payload, r.impl), []).append(r)
    out = []
    for runs in cases.values():
        ok = [r for r in runs if not r.failed and not r.errors]
        if not ok:
            continue
        first = ok[0]
        rates = [r.rate for r in ok]
        ratios = [r.ratio for r in ok if r.ratio is not None]
        out.append(
            Summary(
                first.scenario,
                first.payload,
                first.impl,
                first.baseline,
                first.unit,
                len(ok),
                statistics.median(rates),
                min(rates),
                max(rates),
                _median([r.server_cpu_us for r in ok]),
                _median([r.client_cpu_us for r in ok]),
                statistics.median(ratios) if ratios else None,
                min(ratios) if ratios else None,
                max(ratios) if ratios else None,
            )
        )
    return out


def _payload(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def _us(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def table(rows: list[Row]) -> str:
    head = (
        "scenario",
        "payload",
        "impl",
        "rate",
        "unit",
        "p50 ms",
        "p99 ms",
        "cpu µs srv/cli",
        "vs baseline",
    )
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        if r.failed:
            lines.append((r.scenario, _payload(r.payload), r.impl, "FAILED", "", "", "", "", r.failed[:60]))
            continue
        ratio = f"{r.ratio:.2f}x {r.baseline}" if r.ratio is not None else ""
        if r.errors:
            ratio = f"{r.errors} ERRORS: {r.first_error[:60]}"
        lines.append(
            (
                r.scenario,
                _payload(r.payload),
                r.impl,
                f"{r.rate:,.0f}",
                r.unit,
                _ms(r.p50_us),
                _ms(r.p99_us),
                f"{_us(r.server_cpu_us)}/{_us(r.client_cpu_us)}",
                ratio,
            )
        )
    return _columns(lines, right={3, 5, 6, 7})


def summary_table(summaries: list[Summary]) -> str:
    """The medians over the rounds, with the range of the rate and of the per-round ratio."""
    head = (
        "scenario",
        "payload",
        "impl",
        "rounds",
        "median rate",
        "min-max",
        "cpu µs srv/cli",
        "vs baseline",
    )
    lines: list[tuple[str, ...]] = [head]
    for s in summaries:
        ratio = ""
        if s.ratio is not None and s.ratio_min is not None and s.ratio_max is not None:
            ratio = f"{s.ratio:.2f}x ({s.ratio_min:.2f}-{s.ratio_max:.2f}) {s.baseline}"
        lines.append(
            (
                s.scenario,
                _payload(s.payload),
                s.impl,
                str(s.rounds),
                f"{s.rate:,.0f}",
                f"{s.rate_min:,.0f}-{s.rate_max:,.0f}",
                f"{_us(s.server_cpu_us)}/{_us(s.client_cpu_us)}",
                ratio,
            )
        )
    return _columns(lines, right={3, 4, 5, 6})


def _columns(lines: list[tuple[str, ...]], right: set[int]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def headline(summaries: list[Summary]) -> list[dict[str, Any]]:
    """The unary ratio of kitex-grpc to its baseline, per payload, against the goal (median over
    the rounds; with one round, that round's ratio)."""
    found = []
    for s in summaries:
        if (
            s.scenario == registry.HEADLINE_SCENARIO
            and s.impl == registry.HEADLINE_IMPL
            and s.ratio is not None
        ):
            found.append(
                {
                    "scenario": s.scenario,
                    "payload": s.payload,
                    "impl": s.impl,
                    "baseline": s.baseline,
                    "ratio": round(s.ratio, 4),
                    "rounds": s.rounds,
                    "goal": registry.HEADLINE_GOAL,
                    "met": s.ratio >= registry.HEADLINE_GOAL,
                }
            )
    return found


def headline_lines(summaries: list[Summary], inflight: int) -> list[str]:
    return [
        f"HEADLINE unary {inflight} in flight, {_payload(h['payload'])}: {h['impl']} / {h['baseline']} = "
        f"{h['ratio']:.3f}x{' (median of ' + str(h['rounds']) + ' rounds)' if h['rounds'] > 1 else ''} "
        f"(goal >= {h['goal']}x: {'met' if h['met'] else 'NOT met'})"
        for h in headline(summaries)
    ]


def write_json(run: Run, path: Path) -> None:
    doc = {
        "schema": SCHEMA,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "settings": run.settings,
        "skipped": run.skipped,
        "results": [asdict(r) for r in run.rows],
        "summary": [asdict(s) for s in run.summary],
        "headline": headline(run.summary),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def profile_summary(path: Path, top: int = 25) -> str:
    """The ``top`` functions by own time (tottime), then the kitex_grpc entries among the first 200."""
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    ours = io.StringIO()
    pstats.Stats(str(path), stream=ours).sort_stats("tottime").print_stats(r"kitex_grpc|/gen/", 40)
    return (
        buf.getvalue() + "\n--- kitex_grpc and generated code only (by tottime) ---\n" + _strip_header(ours)
    )


def _strip_header(buf: io.StringIO) -> str:
    text = buf.getvalue()
    marker = "   ncalls"
    at = text.find(marker)
    return text[at:] if at >= 0 else text
