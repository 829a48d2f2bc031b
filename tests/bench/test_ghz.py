"""bench/ghz.py: its round order and report reading, and a short run of ghz (pinned in interop/ghz) against
the four real gRPC servers. Nothing here asserts a speed: only that every server answered every call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ghz import IMPLS, Measure, parse_report, ratios, round_order
from tests.gobuild import ROOT, make_go_target

GHZ = ROOT / ".cache" / "bin" / "ghz"


def test_the_order_turns_each_round_and_every_second_round_is_reversed() -> None:
    four = ["a", "b", "c", "d"]
    assert [round_order(four, r) for r in (1, 2, 3, 4, 5)] == [
        ["a", "b", "c", "d"],
        ["a", "d", "c", "b"],  # b c d a, reversed
        ["c", "d", "a", "b"],
        ["c", "b", "a", "d"],  # d a b c, reversed
        ["a", "b", "c", "d"],
    ]
    # Over four rounds each server is first once and last once.
    assert sorted(round_order(four, r)[0] for r in (1, 2, 3, 4)) == ["a", "a", "c", "c"]
    assert sorted(round_order(four, r)[-1] for r in (1, 2, 3, 4)) == ["b", "b", "d", "d"]


def test_a_report_with_failed_calls_counts_only_the_ok_ones() -> None:
    report = {
        "count": 10,
        "total": 2_000_000_000,  # ns
        "statusCodeDistribution": {"OK": 6, "Unavailable": 4},
        "errorDistribution": {"rpc error: code = Unavailable desc = closing": 4},
    }
    rate, count, ok, seconds, errors = parse_report(report)
    assert (rate, count, ok, seconds) == (3.0, 10, 6, 2.0)
    assert errors == {"status Unavailable": 4, "rpc error: code = Unavailable desc = closing": 4}
    assert parse_report({"count": 0, "total": 0}) == (0.0, 0, 0, 0.0, {})


def test_ratios_are_taken_within_each_round() -> None:
    def m(round_no: int, impl: str, rate: float) -> Measure:
        return Measure(round_no, impl, rate, 1, 1, 1.0, None, None, None, None, {})

    measures = [m(1, "x", 10.0), m(1, "y", 5.0), m(2, "y", 4.0), m(2, "x", 2.0), m(3, "x", 1.0)]
    assert ratios(measures, "x", "y") == [2.0, 0.5]  # round 3 has no y


@pytest.mark.timeout(600)  # a cold Go module cache: ghz's modules come from the proxy first
def test_ghz_against_the_four_servers_every_call_answered(tmp_path: Path) -> None:
    make_go_target("ghz-build", "ghz (make ghz-build)")
    out = tmp_path / "ghz.json"
    cmd = [
        sys.executable, "-m", "bench.ghz", "--rounds", "2", "--requests", "100", "--concurrency", "8",
        "--no-pin", "--ghz", str(GHZ), "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["failed"] == []
    measures = report["measures"]
    assert [(m["round"], m["impl"]) for m in measures] == [
        (r, impl) for r in (1, 2) for impl in round_order(list(IMPLS), r)
    ]
    for m in measures:
        assert (m["count"], m["ok"], m["errors"]) == (100, 100, {}), m
        assert m["rate"] > 0
    assert {(c["impl"], c["versus"]): len(c["ratios"]) for c in report["comparisons"]} == {
        ("kitex-grpc", "grpc-aio"): 2,
        ("kitex-h2", "grpc-aio"): 2,
        ("kitex-h2", "grpclib"): 2,
        ("kitex-grpc", "grpclib"): 2,
    }
    assert "GOAL #22 ghz unary kitex-grpc >= 0.95x grpc-aio" in done.stdout


def test_a_missing_ghz_is_reported(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "bench.ghz",
        "--ghz",
        str(tmp_path / "no-ghz"),
        "--json",
        str(tmp_path / "x"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "make ghz-build" in done.stderr
    assert not (tmp_path / "x").exists()
