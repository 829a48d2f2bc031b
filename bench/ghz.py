"""ghz, the Go gRPC load tester, against our two gRPC server transports and their baselines, in one run:
``python -m bench.ghz [--rounds N] [--duration S | --requests N]``.

The four servers (``kitex-grpc`` on grpcio, ``kitex-h2`` on h2, raw ``grpc-aio`` and ``grpclib``, each
serving ``echo.v1.Echo/Unary`` from bench/servers.py) start at once, each in its own process pinned to
the first CPU. This process then pins itself (and so every ghz it starts) to the second CPU and, round
after round, runs ghz against each server in turn with the same settings: a warm-up run, then the
measured run. The order of the servers turns by one place each round and every second round is reversed,
so no server always follows the same neighbour or holds the same place. A call counts when ghz saw it
complete with OK; in-flight calls at the end of a timed run are ignored (``--duration-stop ignore``).

It prints, per round, each server's calls/s and CPU µs per call (from ``/proc``), then the median of the
per-round ratios (each ratio within one round) and a ``GOAL`` line for each of issue 22's goals
(kitex-grpc >= 0.95x grpc-aio, kitex-h2 >= 2.5x grpc-aio). The figures go to
``bench/results/ghz-latest.json``. ghz is built by ``make ghz-build`` (interop/ghz/go.mod pins it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import proc, registry, stubs
from bench.run import CaseFailedError, _child_env, cpus, server_process
from kitex_grpc.compiled import compiled_modules

REPO = Path(__file__).resolve().parent.parent
GHZ = REPO / ".cache" / "bin" / "ghz"
RESULTS = REPO / "bench" / "results"
PROTO = "echo/v1/echo.proto"
CALL = "echo.v1.Echo.Unary"
IMPLS: tuple[str, ...] = ("kitex-grpc", "kitex-h2", "grpc-aio", "grpclib")
# (impl, versus, goal or None): the ratios reported, each taken within a round.
COMPARISONS: tuple[tuple[str, str, float | None], ...] = (
    ("kitex-grpc", "grpc-aio", 0.95),  # issue 22, item 7
    ("kitex-h2", "grpc-aio", 2.5),  # issue 22, item 7
    ("kitex-h2", "grpclib", None),
    ("kitex-grpc", "grpclib", None),
)
GHZ_TIMEOUT_SLACK = 60.0  # seconds beyond a run's own length before a hung ghz is killed


@dataclass(frozen=True)
class Measure:
    """One ghz run against one server."""

    round: int
    impl: str
    rate: float  # completed calls per second, as ghz counts them
    count: int
    ok: int
    seconds: float
    p50_us: float | None
    p99_us: float | None
    server_cpu_us: float | None  # server CPU (user + system) per completed call
    ghz_cpu_us: float | None  # ghz's CPU per completed call: near 1e6 / rate, ghz set the rate
    errors: dict[str, int]


def round_order(impls: list[str], round_no: int) -> list[str]:
    """The order of round ``round_no`` (from 1): turned by one place a round, every second one reversed."""
    shift = (round_no - 1) % len(impls)
    order = impls[shift:] + impls[:shift]
    return order[::-1] if round_no % 2 == 0 else order


def ghz_command(
    ghz: Path, address: str, args: argparse.Namespace, *, seconds: float, requests: int
) -> list[str]:
    """ghz's command line: plaintext, one fixed request (no templating per call), JSON report on stdout."""
    data = {"message": "bench", "payload": base64.b64encode(b"x" * args.payload).decode(), "seq": 1}
    cmd = [
        str(ghz), "--insecure", "--proto", str(stubs.PROTO_ROOT / PROTO),
        "--import-paths", str(stubs.PROTO_ROOT), "--call", CALL, "--data", json.dumps(data),
        "--disable-template-functions", "--disable-template-data",
        "--concurrency", str(args.concurrency), "--connections", str(args.connections),
        "--cpus", "1", "--timeout", "20s", "--format", "json",
    ]  # fmt: skip
    if requests:
        cmd += ["--total", str(requests)]
    else:
        cmd += ["--duration", f"{seconds:g}s", "--duration-stop", "ignore"]
    return [*cmd, address]


def parse_report(report: dict[str, Any]) -> tuple[float, int, int, float, dict[str, int]]:
    """(calls/s, calls, OK calls, seconds, {error or non-OK status: count}) from ghz's JSON report."""
    count = int(report.get("count", 0))
    statuses: dict[str, int] = dict(report.get("statusCodeDistribution") or {})
    ok = statuses.pop("OK", 0)
    errors = {f"status {k}": v for k, v in statuses.items()}
    errors.update(report.get("errorDistribution") or {})
    seconds = int(report.get("total", 0)) / 1e9  # a Go time.Duration: nanoseconds
    return (ok / seconds if seconds > 0 else 0.0), count, ok, seconds, errors


def _latency_us(report: dict[str, Any], percentage: int) -> float | None:
    for entry in report.get("latencyDistribution") or []:
        if entry.get("percentage") == percentage:
            return int(entry["latency"]) / 1e3
    return None


def _children_cpu_seconds() -> float:
    """CPU seconds of the children that ended so far (each ghz run once it was waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_ghz(cmd: list[str], budget: float) -> dict[str, Any]:
    """Run ghz (bounded by ``budget`` seconds) and return its JSON report."""
    p = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(p.communicate(), budget)
    except TimeoutError:
        raise CaseFailedError(f"ghz did not finish within {budget:.0f} s") from None
    finally:
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()
    if p.returncode != 0 or not out.strip():
        raise CaseFailedError(f"ghz exited {p.returncode}: {err.decode(errors='replace').strip()[-2000:]}")
    report: dict[str, Any] = json.loads(out)
    return report


async def measure(
    ghz: Path, impl: str, address: str, pid: int, round_no: int, args: argparse.Namespace
) -> Measure:
    """A warm-up run (unless ``--warmup 0``), then the measured run, of ghz against one server."""
    budget = max(args.duration, args.warmup) + GHZ_TIMEOUT_SLACK
    if args.warmup > 0 and not args.requests:
        await run_ghz(ghz_command(ghz, address, args, seconds=args.warmup, requests=0), budget)
    cmd = ghz_command(ghz, address, args, seconds=args.duration, requests=args.requests)
    cpu_before, ghz_before = proc.process_cpu_seconds(pid), _children_cpu_seconds()
    report = await run_ghz(cmd, budget)
    cpu_after, ghz_after = proc.process_cpu_seconds(pid), _children_cpu_seconds()
    rate, count, ok, seconds, errors = parse_report(report)
    cpu = None if cpu_before is None or cpu_after is None or not ok else (cpu_after - cpu_before) * 1e6 / ok
    ghz_cpu = (ghz_after - ghz_before) * 1e6 / ok if ok else None
    return Measure(
        round_no,
        impl,
        rate,
        count,
        ok,
        seconds,
        _latency_us(report, 50),
        _latency_us(report, 99),
        cpu,
        ghz_cpu,
        errors,
    )


def ratios(measures: list[Measure], impl: str, versus: str) -> list[float]:
    """``impl``'s rate over ``versus``'s, per round (rounds where either has no rate are left out)."""
    by_round: dict[int, dict[str, float]] = {}
    for m in measures:
        by_round.setdefault(m.round, {})[m.impl] = m.rate
    return [r[impl] / r[versus] for _, r in sorted(by_round.items()) if r.get(impl) and r.get(versus)]


def summary_lines(impls: list[str], measures: list[Measure]) -> list[str]:
    lines = ["", "median over rounds (range):"]
    for impl in impls:
        rates = [m.rate for m in measures if m.impl == impl]
        cpu = [m.server_cpu_us for m in measures if m.impl == impl and m.server_cpu_us is not None]
        ghz_cpu = [m.ghz_cpu_us for m in measures if m.impl == impl and m.ghz_cpu_us is not None]
        if rates:
            cpu_text = f", server {statistics.median(cpu):.1f} µs/call" if cpu else ""
            cpu_text += f", ghz {statistics.median(ghz_cpu):.1f} µs/call" if ghz_cpu else ""
            lines.append(
                f"  {impl:<11} {statistics.median(rates):>9,.0f} calls/s "
                f"({min(rates):,.0f}-{max(rates):,.0f}){cpu_text}"
            )
    for impl, versus, goal in COMPARISONS:
        rs = ratios(measures, impl, versus)
        if not rs:
            continue
        per_round = " ".join(f"{r:.2f}" for r in rs)
        med = statistics.median(rs)
        lines.append(f"  {impl} / {versus}: median {med:.2f}x over {len(rs)} rounds ({per_round})")
        if goal is not None:
            verdict = "met" if med >= goal else "NOT met"
            lines.append(f"GOAL #22 ghz unary {impl} >= {goal}x {versus}: {med:.2f}x, {verdict}")
    return lines


async def main_async(args: argparse.Namespace, report: dict[str, Any]) -> int:
    ghz = Path(args.ghz)
    impls = [registry.get(name).name for name in args.only or IMPLS]
    server_cpu, client_cpu = cpus(not args.no_pin)
    stub_dir = Path(tempfile.mkdtemp(prefix="bench-stubs-"))
    stubs.generate(stub_dir)
    env = _child_env(stub_dir, args.loop)
    what = (
        f"{args.requests} calls"
        if args.requests
        else f"{args.duration:g} s (after {args.warmup:g} s warm-up)"
    )
    print(
        f"kitex_grpc {proc.compiled_summary()}; loop {args.loop}; ghz -c {args.concurrency} "
        f"--connections {args.connections}, {args.payload} B, {what} per server, {args.rounds} rounds; "
        f"servers on CPU {server_cpu}, ghz on CPU {client_cpu}"
    )
    report["settings"] = {
        "rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
        "requests": args.requests, "concurrency": args.concurrency, "connections": args.connections,
        "payload": args.payload, "loop": args.loop, "server_cpu": server_cpu, "client_cpu": client_cpu,
        "compiled_modules": compiled_modules(), "impls": impls,
    }  # fmt: skip
    measures: list[Measure] = []
    failed: list[str] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            servers = {
                impl: await stack.enter_async_context(
                    server_process(registry.get(impl), env, server_cpu, None)
                )
                for impl in impls
            }
            proc.pin_cpu(client_cpu)  # after the servers started: every ghz inherits it
            for round_no in range(1, args.rounds + 1):
                cells = []
                for impl in round_order(impls, round_no):
                    address, pid = servers[impl]
                    m = await measure(ghz, impl, address, pid, round_no, args)
                    measures.append(m)
                    cpu = f"{m.server_cpu_us:.1f}" if m.server_cpu_us is not None else "?"
                    ghz_cpu = f"{m.ghz_cpu_us:.1f}" if m.ghz_cpu_us is not None else "?"
                    cells.append(f"{impl} {m.rate:,.0f}/s ({cpu}/{ghz_cpu} µs)")
                    if m.errors or not m.ok or (args.requests and m.ok != args.requests):
                        failed.append(f"round {round_no} {impl}: {m.ok} OK of {m.count}, errors {m.errors}")
                print(f"round {round_no}: " + ", ".join(cells), flush=True)  # µs: server/ghz CPU per call
    except CaseFailedError as exc:
        failed.append(str(exc))
    finally:
        shutil.rmtree(stub_dir, ignore_errors=True)
        report["measures"] = [asdict(m) for m in measures]
        report["comparisons"] = [
            {"impl": i, "versus": v, "goal": g, "ratios": ratios(measures, i, v)} for i, v, g in COMPARISONS
        ]
        report["failed"] = failed
    for line in summary_lines(impls, measures):
        print(line)
    for reason in failed:
        print(f"FAILED: {reason}")
    return 1 if failed else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ghz", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=3.0, help="seconds ghz measures each server (default 3)")
    p.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of an unmeasured ghz run first (default 1)"
    )
    p.add_argument("--requests", type=int, default=0, help="a fixed number of calls instead of --duration")
    p.add_argument("--concurrency", type=int, default=50, help="ghz workers (default 50, ghz's own default)")
    p.add_argument("--connections", type=int, default=1, help="HTTP/2 connections ghz opens (default 1)")
    p.add_argument(
        "--payload", type=int, default=64, help="bytes in the request's payload field (default 64)"
    )
    p.add_argument("--only", nargs="+", choices=IMPLS, help="a subset of the four servers")
    p.add_argument("--loop", choices=proc.LOOPS, default="asyncio", help="every server's event loop")
    p.add_argument("--no-pin", action="store_true", help="do not pin the servers and ghz to CPUs")
    p.add_argument("--ghz", default=str(GHZ), help="the ghz binary (default .cache/bin/ghz)")
    p.add_argument("--json", default=str(RESULTS / "ghz-latest.json"), help="where the figures go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.ghz).exists():
        print(f"ghz not found at {args.ghz}: build it with `make ghz-build`", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    status = asyncio.run(main_async(args, report))
    if "settings" in report:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
