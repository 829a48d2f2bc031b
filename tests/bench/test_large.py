"""bench/large.py: which cases a run has, its table, and a short run against real server processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.large import FLOOR, SCENARIOS, STREAM, CaseResult, plan, size_label, table

REPO = Path(__file__).resolve().parents[2]


def test_plan_puts_the_floor_first_and_thrift_in_unary_only() -> None:
    cases = plan(["kitex-h2", "thriftpy2", FLOOR], [1024, 2048], list(SCENARIOS))
    assert cases == [
        ("unary", 1024, FLOOR),
        ("unary", 1024, "kitex-h2"),
        ("unary", 1024, "thriftpy2"),
        ("unary", 2048, FLOOR),
        ("unary", 2048, "kitex-h2"),
        ("unary", 2048, "thriftpy2"),
        ("bidi-pipelined", 1024, FLOOR),
        ("bidi-pipelined", 1024, "kitex-h2"),
        ("bidi-pipelined", 2048, FLOOR),
        ("bidi-pipelined", 2048, "kitex-h2"),
        (STREAM, 1024, FLOOR),
        (STREAM, 1024, "kitex-h2"),
        (STREAM, 2048, FLOOR),
        (STREAM, 2048, "kitex-h2"),
    ]


def test_table_divides_by_the_floor_of_the_same_scenario_and_size() -> None:
    results = [
        CaseResult("unary", 1 << 20, FLOOR, messages=10, seconds=1.0, mb_per_s=400.0, p50_ms=1.0, p99_ms=2.0),
        CaseResult(
            "unary", 1 << 20, "kitex-h2", messages=5, seconds=1.0, mb_per_s=100.0, p50_ms=3.0, p99_ms=9.5
        ),
        CaseResult("unary", 65536, "kitex-h2", mb_per_s=50.0),  # no floor for this size
        CaseResult("unary", 65536, "grpclib", errors=1, error="boom"),
    ]
    lines = table(results).splitlines()
    assert len(lines) == 2 + len(results)
    assert lines[2].startswith("| unary | 1 MiB | raw-socket | 400 | 1.00x | 1.0 | 2.0 |")
    assert lines[3].startswith("| unary | 1 MiB | kitex-h2 | 100 | 0.25x | 3.0 | 9.5 |")
    assert lines[4].startswith("| unary | 64 KiB | kitex-h2 | 50 | - |")
    assert lines[5].startswith("| unary | 64 KiB | grpclib | FAILED: boom |")
    assert [size_label(n) for n in (512, 65536, 16 << 20)] == ["512 B", "64 KiB", "16 MiB"]


def test_a_short_run_measures_every_case(tmp_path: Path) -> None:
    out = tmp_path / "large.json"
    impls = ["kitex-h2", "kitex-ttheader", FLOOR]
    size, total = 65536, 1 << 20
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.large", "--impls", *impls, "--sizes", str(size),
            "--total", str(total), "--duration", "0.3", "--warmup", "0.1", "--json", str(out),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())["results"]
    expected = plan(impls, [size], list(SCENARIOS))
    assert [(r["scenario"], r["size"], r["impl"]) for r in results] == expected
    assert len(expected) == 7  # Thrift runs unary only
    for r in results:
        label = f"{r['scenario']} {r['impl']}"
        assert r["errors"] == 0 and r["messages"] > 0, label
        assert 0 < r["mb_per_s"] < 100_000, label
        # both processes are real Python processes: tens of MiB, not nothing and not gigabytes
        assert 10 < r["server_peak_rss_mb"] < 2000 and 10 < r["client_peak_rss_mb"] < 2000, label
        assert r["client_cpu_ms_per_mb"] > 0 and r["server_cpu_ms_per_mb"] >= 0, label
        if r["scenario"] == STREAM:
            assert r["messages"] == total // size and r["p50_ms"] is None, label
        else:
            assert 0 < r["p50_ms"] <= r["p99_ms"], label
    for scenario, _, impl in expected:  # the printed table has a row per case
        assert f"| {scenario} | 64 KiB | {impl} |" in done.stdout
