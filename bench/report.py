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

SCHEMA = 3  # 2: rows carry their round; a summary over the rounds. 3: every issue goal, not one headline


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


def goals(rows: list[Row]) -> list[dict[str, Any]]:
    """Each issue goal (``registry.GOALS``) per payload whose two implementations both ran: the median
    over the rounds of the per-round ratio (each round's rows ran in the same pass), and its range."""
    rates = {(r.scenario, r.payload, r.impl, r.round): r.rate for r in rows if not r.failed and not r.errors}
    payloads = sorted({r.payload for r in rows})
    rounds = sorted({r.round for r in rows})
    found = []
    for goal in registry.GOALS:
        for payload in payloads:
            ratios = []
            for n in rounds:
                ours = rates.get((goal.scenario, payload, goal.impl, n))
                theirs = rates.get((goal.scenario, payload, goal.versus, n))
                if ours is not None and theirs:
                    ratios.append(ours / theirs)
            if not ratios:
                continue
            median = statistics.median(ratios)
            found.append(
                {
                    "issue": goal.issue,
                    "scenario": goal.scenario,
                    "payload": payload,
                    "impl": goal.impl,
                    "versus": goal.versus,
                    "ratio": round(median, 4),
                    "ratio_min": round(min(ratios), 4),
                    "ratio_max": round(max(ratios), 4),
                    "rounds": len(ratios),
                    "goal": goal.ratio,
                    "met": median >= goal.ratio,
                }
            )
    return found


def goal_lines(rows: list[Row], inflight: int) -> list[str]:
    # The issues' goals are for 64 calls or messages in flight.
    note = "" if inflight == 64 else f" [at {inflight} in flight, not the goals' 64]"
    out = []
    for g in goals(rows):
        spread = f" (median of {g['rounds']} rounds, {g['ratio_min']:.2f}-{g['ratio_max']:.2f})"
        out.append(
            f"GOAL #{g['issue']} {g['scenario']} {_payload(g['payload'])}: {g['impl']} / {g['versus']} = "
            f"{g['ratio']:.2f}x{spread if g['rounds'] > 1 else ''}, goal >= {g['goal']}x: "
            f"{'met' if g['met'] else 'NOT met'}{note}"
        )
    return out


def write_json(run: Run, path: Path) -> None:
    doc = {
        "schema": SCHEMA,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "settings": run.settings,
        "skipped": run.skipped,
        "results": [asdict(r) for r in run.rows],
        "summary": [asdict(s) for s in run.summary],
        "goals": goals(run.rows),
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
