"""bench/interleave.py: its schedule and arithmetic, and short runs against real servers."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.interleave import (
    Slice,
    SliceCounter,
    bootstrap_interval,
    compare,
    instance_labels,
    parse_args,
    schedule,
    split_instance,
)
from tests.interop.kitex_peer import build_binaries

REPO = Path(__file__).resolve().parents[2]


def test_schedule_reverses_every_other_round() -> None:
    assert schedule(["a", "b"], 3) == [(1, "a"), (1, "b"), (2, "b"), (2, "a"), (3, "a"), (3, "b")]
    assert schedule(["a", "b", "c"], 2) == [(1, "a"), (1, "b"), (1, "c"), (2, "c"), (2, "b"), (2, "a")]


def test_repeated_impls_get_numbered_labels() -> None:
    assert instance_labels(["x", "y", "x", "x"]) == ["x", "y", "x#2", "x#3"]


def test_an_impl_may_name_its_servers_loop() -> None:
    assert split_instance("kitex-ttheader", "asyncio") == ("kitex-ttheader", "asyncio")
    assert split_instance("kitex-ttheader@uvloop", "asyncio") == ("kitex-ttheader", "uvloop")
    assert split_instance("kitex-ttheader@asyncio", "uvloop") == ("kitex-ttheader", "asyncio")
    args = parse_args(["kitex-ttheader", "kitex-ttheader@uvloop", "--client", "go"])
    assert instance_labels(args.impls) == ["kitex-ttheader", "kitex-ttheader@uvloop"]
    with pytest.raises(SystemExit):
        parse_args(["kitex-ttheader", "kitex-ttheader@trio"])
    with pytest.raises(SystemExit):
        parse_args(["kitex-ttheader", "nothing@uvloop"])


def test_counter_counts_a_call_only_for_its_own_slice_after_the_settle_time() -> None:
    counter = SliceCounter([0, 1], start=10.0, length=1.0, settle=0.25)  # a in [10, 11), b in [11, 12)
    one, two = counter.new_thread(), counter.new_thread()
    counter.record(one, 0, 10.5)  # a's call in a's slice: counted
    counter.record(two, 0, 10.9)
    counter.record(one, 0, 10.1)  # inside the settle time: not counted
    counter.record(one, 0, 11.5)  # a's call draining into b's slice: not counted
    counter.record(two, 1, 11.3)  # b's call in b's slice: counted
    counter.record(two, 1, 9.9)  # before the first slice
    counter.record(two, 1, 12.0)  # after the last
    assert counter.totals() == [2, 1]
    assert [counter.target_at(t) for t in (9.99, 10.0, 11.5, 12.0)] == [None, 0, 1, None]


def test_compare_divides_within_each_round() -> None:
    slices = [
        Slice(1, "a", rate=110.0),
        Slice(1, "b", rate=100.0),
        Slice(2, "b", rate=50.0),
        Slice(2, "a", rate=40.0),
        Slice(3, "a", rate=90.0),
        Slice(3, "b", rate=0.0),  # a round without calls to one side has no ratio
    ]
    c = compare(slices, "a", "b")
    assert c.ratios == [pytest.approx(1.1), pytest.approx(0.8)]
    assert c.median == pytest.approx(0.95)
    assert c.geomean == pytest.approx(math.sqrt(1.1 * 0.8))  # the geometric mean
    assert c.at_least_one == 1
    assert c.ci_low <= c.geomean <= c.ci_high


def test_bootstrap_interval() -> None:
    assert bootstrap_interval([1.25] * 7) == (pytest.approx(1.25), pytest.approx(1.25))
    low, high = bootstrap_interval([0.9, 1.0, 1.1, 1.2, 1.3])
    assert 0.9 < low < statistics.geometric_mean([0.9, 1.0, 1.1, 1.2, 1.3]) < high < 1.3
    assert bootstrap_interval([0.9, 1.0, 1.1, 1.2, 1.3]) == (low, high)  # seeded: the same every time


def short_run(tmp_path: Path, *options: str) -> tuple[dict[str, Any], str]:
    """Two rounds of kitex-server-sync against thriftpy2-threaded at 64 B: the JSON report, stdout."""
    out = tmp_path / "interleave.json"
    cmd = [
        sys.executable, "-m", "bench.interleave", "kitex-server-sync", "thriftpy2-threaded",
        "--payload", "64", "--rounds", "2", "--slice", "0.3", "--settle", "0.05", "--warmup", "0.2",
        "--inflight", "4", "--no-pin", "--json", str(out), *options,
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    slices = report["payloads"]["64"]["slices"]
    pair = ["kitex-server-sync", "thriftpy2-threaded"]
    assert [(s["round"], s["impl"]) for s in slices] == schedule(pair, 2)
    assert all(s["calls"] > 0 and s["rate"] == pytest.approx(s["calls"] / 0.25) for s in slices)
    (comparison,) = report["payloads"]["64"]["comparisons"]
    assert len(comparison["ratios"]) == 2
    assert "64 B: kitex-server-sync / thriftpy2-threaded over 2 rounds" in done.stdout
    return report, done.stdout


def test_a_short_interleaved_run_of_two_real_servers(tmp_path: Path) -> None:
    report, stdout = short_run(tmp_path)
    assert report["settings"]["client"] == "python"
    assert "GOAL #4 unary 64 B, interleaved" in stdout


@pytest.mark.interop
def test_a_short_interleaved_run_with_the_go_kitex_client(tmp_path: Path) -> None:
    build_binaries()  # fails in CI without Go, skips elsewhere
    report, stdout = short_run(tmp_path, "--client", "go")
    assert report["settings"]["client"] == "go"
    assert "GOAL" not in stdout  # the goal is stated for thriftpy2's client
