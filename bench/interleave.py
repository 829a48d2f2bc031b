"""Servers compared by one client, interleaved: ``python -m bench.interleave IMPL IMPL... [options]``.

``bench/run.py`` measures each server in a case of its own, seconds apart. On a shared VM the
machine's speed changes from one half second to the next (one server's rate by up to 20%), so a
single round's ratio of two such cases spreads from 0.7x to 1.4x (see bench/README.md). Here every
named server runs at once (each in its own process, pinned to the same CPU), and one client process
(pinned to the other CPU) switches all its calls from one server to the next every ``--slice``
seconds: A B, then B A, and so on. A round gives every server one slice, back to back, so a change
of the machine's speed lands on both sides of each round's ratio.

The implementations must share one blocking client (``BlockingClient``: the thriftpy2 sync client's
impls ``kitex-server-sync``, ``thriftpy2-threaded`` and ``asyncio-floor``). The first one named is
divided by each of the others. Naming one impl twice runs two servers of it, the second labelled
``<impl>#2``: an A/A check of the method, whose ratio should come out at 1.0x within its interval.
``IMPL@LOOP`` runs that one server on ``LOOP`` (``asyncio`` or ``uvloop``) whatever ``--loop`` says:
``kitex-ttheader kitex-ttheader@uvloop --client go`` compares the two loops under one server.

Each of ``--inflight`` threads holds a connection to every server and calls whichever server the
current slice belongs to. A call counts for a slice when it was made to the slice's server and
completes inside the slice after its first ``--settle`` seconds (when calls to the previous server
have drained). Server and client CPU per call are read from ``/proc`` over the same span. The ratio
of a round is the first server's rate over another's; the summary gives the median, the geometric
mean with a 95% bootstrap interval over rounds, and how many rounds reached 1.0x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench import proc, registry
from bench.adapter import BlockingClient, load
from bench.registry import Impl
from bench.run import REPO, RESULTS, CaseFailedError, _child_env, cpus, server_process
from kitex_grpc.compiled import compiled_modules

BOOTSTRAP_SAMPLES = 5000
BOOTSTRAP_SEED = 4  # fixed: the same figures give the same interval
GO_TRANSPORTS = ("framed", "ttheader", "ttheader_framed")
CALL_GRACE = 30.0  # seconds past the last slice before a stuck server fails the run


@dataclass
class Slice:
    """One slice of the schedule: which server, and what was measured in its counted span."""

    round: int
    impl: str
    calls: int = 0
    rate: float = 0.0
    server_cpu_us: float | None = None
    client_cpu_us: float | None = None


@dataclass
class Comparison:
    """The first implementation against one other, over the rounds."""

    impl: str
    versus: str
    ratios: list[float] = field(default_factory=list)
    median: float = 0.0
    geomean: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 0.0
    at_least_one: int = 0


def split_instance(name: str, default_loop: str) -> tuple[str, str]:
    """``IMPL`` or ``IMPL@LOOP`` as (impl, the event loop its server runs on)."""
    impl, _, loop = name.partition("@")
    return impl, loop or default_loop


def instance_labels(names: list[str]) -> list[str]:
    """One label per server: its impl's name, with ``#2``, ``#3``... on repeats (an A/A check runs
    two servers of one impl)."""
    labels = []
    for k, name in enumerate(names):
        seen = names[:k].count(name)
        labels.append(f"{name}#{seen + 1}" if seen else name)
    return labels


def schedule(impls: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, impl) per slice: odd rounds in the given order, even rounds reversed, so that no
    server always follows the same one (A B, B A, A B, ...)."""
    out: list[tuple[int, str]] = []
    for r in range(1, rounds + 1):
        order = impls if r % 2 else impls[::-1]
        out.extend((r, name) for name in order)
    return out


def bootstrap_interval(ratios: list[float]) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the geometric mean, resampling rounds."""
    rng = random.Random(BOOTSTRAP_SEED)
    logs = [math.log(r) for r in ratios]
    n = len(logs)
    means = sorted(sum(rng.choices(logs, k=n)) / n for _ in range(BOOTSTRAP_SAMPLES))
    return math.exp(means[int(0.025 * BOOTSTRAP_SAMPLES)]), math.exp(
        means[int(0.975 * BOOTSTRAP_SAMPLES) - 1]
    )


def compare(slices: list[Slice], impl: str, versus: str) -> Comparison:
    by_round: dict[int, dict[str, float]] = {}
    for s in slices:
        by_round.setdefault(s.round, {})[s.impl] = s.rate
    cmp = Comparison(impl, versus)
    for rates in by_round.values():
        if rates.get(impl) and rates.get(versus):
            cmp.ratios.append(rates[impl] / rates[versus])
    if cmp.ratios:
        cmp.median = statistics.median(cmp.ratios)
        cmp.geomean = statistics.geometric_mean(cmp.ratios)
        cmp.ci_low, cmp.ci_high = bootstrap_interval(cmp.ratios)
        cmp.at_least_one = sum(r >= 1.0 for r in cmp.ratios)
    return cmp


class SliceCounter:
    """Completed calls per slice, counted per thread (no shared counter to race on)."""

    def __init__(self, targets: list[int], start: float, length: float, settle: float) -> None:
        self._target = targets  # the server index per slice
        self._start = start
        self._length = length
        self._settle = settle
        self._n = len(targets)
        self.per_thread: list[list[int]] = []

    def new_thread(self) -> list[int]:
        counts = [0] * self._n
        self.per_thread.append(counts)
        return counts

    def target_at(self, now: float) -> int | None:
        """The server index the slice at ``now`` belongs to; None before the first or after the last."""
        k = int((now - self._start) // self._length)
        return self._target[k] if 0 <= k < self._n else None

    def record(self, counts: list[int], target: int, end: float) -> None:
        offset = end - self._start
        k = int(offset // self._length)
        if 0 <= k < self._n and self._target[k] == target and offset - k * self._length >= self._settle:
            counts[k] += 1

    def totals(self) -> list[int]:
        return [sum(c[k] for c in self.per_thread) for k in range(self._n)]


def drive(
    callers: list[list[Callable[[Any], Any]]],
    request: Any,
    counter: SliceCounter,
    warmup_end: float,
    first_target: int,
    errors: list[str],
) -> None:
    """One plain thread per caller slot: call the current slice's server until the last slice ends.

    Before the first slice (warm-up) every thread calls the first slice's server.
    """

    def worker(mine: list[Callable[[Any], Any]]) -> None:
        counts = counter.new_thread()
        while True:
            now = time.perf_counter()
            target = first_target if now < warmup_end else counter.target_at(now)
            if target is None:
                return
            try:
                mine[target](request)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                return  # a failing server must not spin; the error fails the run
            counter.record(counts, target, time.perf_counter())

    threads = [threading.Thread(target=worker, args=(row,), daemon=True) for row in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def cpu_seconds(pid: int) -> float:
    """The process's CPU seconds so far; NaN when unreadable (the figure is then left out)."""
    cpu = proc.process_cpu_seconds(pid)
    return math.nan if cpu is None else cpu


class CpuSampler:
    """Each slice's server's CPU seconds, and the client process's, over the slice's counted span."""

    def __init__(self, server_pids: list[int], targets: list[int], client_cpu: Callable[[], float]) -> None:
        self._pids = server_pids
        self._targets = targets
        self._client_cpu = client_cpu
        self.spans: list[tuple[float, float, float, float]] = []  # server start/end, client start/end
        self._open: tuple[float, float] | None = None

    def begin(self, k: int) -> None:
        self._open = (self._server(k), self._client_cpu())

    def end(self, k: int) -> None:
        assert self._open is not None
        server0, client0 = self._open
        self.spans.append((server0, self._server(k), client0, self._client_cpu()))

    def _server(self, k: int) -> float:
        return cpu_seconds(self._pids[self._targets[k]])

    def pace(self, start: float, length: float, settle: float) -> None:
        """Sample at each slice's settle point and end, ``start`` being slice 0's perf_counter time.
        The clock paces the samples; nothing waits on the load."""
        for k in range(len(self._targets)):
            slice_start = start + k * length
            time.sleep(max(0.0, slice_start + settle - time.perf_counter()))
            self.begin(k)
            time.sleep(max(0.0, slice_start + length - time.perf_counter()))
            self.end(k)


def thread_load(
    clients: list[BlockingClient],
    callers: list[list[Callable[[Any], Any]]],
    pids: list[int],
    targets: list[int],
    payload: int,
    args: argparse.Namespace,
) -> tuple[list[int], CpuSampler]:
    """The shared blocking client, in this process: one thread per row of ``callers`` (a caller per
    server each). Calls per slice."""
    request = clients[0].request(b"x" * payload)
    start = time.perf_counter() + args.warmup
    counter = SliceCounter(targets, start, args.slice, args.settle)
    sampler = CpuSampler(pids, targets, time.process_time)
    errors: list[str] = []
    load_thread = threading.Thread(
        target=drive, args=(callers, request, counter, start, targets[0], errors), daemon=True
    )
    load_thread.start()
    sampler.pace(start, args.slice, args.settle)
    load_thread.join(CALL_GRACE)
    if load_thread.is_alive():
        raise CaseFailedError(f"calls still in flight {CALL_GRACE:.0f}s after the last slice")
    if errors:
        raise CaseFailedError(f"{len(errors)} thread(s) stopped on an error, first: {errors[0]}")
    return counter.totals(), sampler


def go_load(
    addresses: list[str], pids: list[int], targets: list[int], payload: int, args: argparse.Namespace
) -> tuple[list[int], CpuSampler]:
    """A Go Kitex client (interop/cmd/load), in its own process on the client CPU. Calls per slice."""
    cmd = [
        str(go_load_binary()), "-addr", ",".join(addresses), "-order", ",".join(map(str, targets)),
        "-slice", f"{args.slice}s", "-settle", f"{args.settle}s", "-warmup", f"{args.warmup}s",
        "-transport", args.transport, "-concurrency", str(args.inflight), "-payload", str(payload),
    ]  # fmt: skip
    budget = args.warmup + len(targets) * args.slice + CALL_GRACE
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout is not None
            kind, _, start_ns = p.stdout.readline().partition(" ")
            if kind != "START":
                raise CaseFailedError(f"the Go load client did not start (exit status {p.wait(budget)})")
            start = time.perf_counter() + int(start_ns) / 1e9 - time.time()
            sampler = CpuSampler(pids, targets, partial(cpu_seconds, p.pid))
            sampler.pace(start, args.slice, args.settle)
            out, _ = p.communicate(timeout=budget)
        finally:
            if p.poll() is None:
                p.kill()
    kind, _, rest = out.strip().rpartition("\n")[2].partition(" ")
    if kind != proc.RESULT:
        raise CaseFailedError(f"the Go load client exited {p.returncode} without a result")
    result = json.loads(rest)
    if result["errors"]:
        raise CaseFailedError(f"{result['errors']} call(s) failed, first: {result['first_error']}")
    counts: list[int] = result["counts"]
    return counts, sampler


def go_load_binary() -> Path:
    """interop/cmd/load, built (or found up to date) by ``make interop-build``."""
    go = shutil.which("go") or next((g for g in ("/usr/local/go/bin/go",) if Path(g).exists()), None)
    if go is None:
        raise CaseFailedError("--client go needs the Go toolchain (go on PATH or /usr/local/go/bin/go)")
    build = subprocess.run(
        ["make", "-s", "interop-build", f"INTEROP_GO={go}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode:
        raise CaseFailedError(f"make interop-build failed:\n{build.stdout}{build.stderr}")
    return REPO / ".cache" / "interop" / "bin" / "load"


def to_slices(
    plan: list[tuple[int, str]], counts: list[int], sampler: CpuSampler, args: argparse.Namespace
) -> list[Slice]:
    counted = args.slice - args.settle
    slices = []
    for (round_, name), calls, (s0, s1, c0, c1) in zip(plan, counts, sampler.spans, strict=True):
        s = Slice(round_, name, calls, calls / counted)
        if calls:
            s.server_cpu_us = None if math.isnan(s1 - s0) else (s1 - s0) / calls * 1e6
            s.client_cpu_us = None if math.isnan(c1 - c0) else (c1 - c0) / calls * 1e6
        slices.append(s)
    return slices


def summary_lines(impls: list[str], slices: list[Slice], payload: int, *, goals: bool) -> list[str]:
    """The table of rates and CPU, one line per comparison, and the goal lines if ``goals`` (the
    registry's goals are stated for the impls' own client)."""
    lines = [f"{'impl':<20} {'median rate':>12} {'min-max':>16}  {'cpu µs srv/cli':>14}"]
    for name in impls:
        mine = [s for s in slices if s.impl == name]
        rates = [s.rate for s in mine]
        srv = [s.server_cpu_us for s in mine if s.server_cpu_us is not None]
        cli = [s.client_cpu_us for s in mine if s.client_cpu_us is not None]
        cpu = f"{statistics.median(srv):.1f}/{statistics.median(cli):.1f}" if srv and cli else "-"
        rate = statistics.median(rates)
        lines.append(f"{name:<20} {rate:>12,.0f} {min(rates):>7,.0f}-{max(rates):<8,.0f}  {cpu:>14}")
    for other in impls[1:]:
        c = compare(slices, impls[0], other)
        if not c.ratios:
            continue
        lines.append(
            f"{payload} B: {c.impl} / {c.versus} over {len(c.ratios)} rounds: median {c.median:.3f}x, "
            f"geomean {c.geomean:.3f}x (95% {c.ci_low:.3f}-{c.ci_high:.3f}), "
            f"{c.at_least_one}/{len(c.ratios)} rounds >= 1.0x, range {min(c.ratios):.2f}-{max(c.ratios):.2f}"
        )
        for goal in registry.GOALS if goals else ():
            if (goal.impl, goal.versus, goal.scenario) == (c.impl, c.versus, registry.UNARY):
                verdict = "met" if c.ci_low >= goal.ratio else "not shown"
                lines.append(
                    f"GOAL #{goal.issue} unary {payload} B, interleaved: {c.impl} / {c.versus} = "
                    f"{c.geomean:.3f}x (95% {c.ci_low:.3f}-{c.ci_high:.3f}), goal >= {goal.ratio}x: {verdict}"
                )
    return lines


async def main_async(args: argparse.Namespace, report: dict[str, Any]) -> int:
    instances = [split_instance(name, args.loop) for name in args.impls]
    impls = [registry.get(impl) for impl, _ in instances]
    labels = instance_labels(args.impls)
    server_cpu, client_cpu = cpus(not args.no_pin)
    stub_dir = Path(tempfile.mkdtemp(prefix="bench-stubs-"))
    envs = [_child_env(stub_dir, loop) for _, loop in instances]
    print(f"kitex_grpc {proc.compiled_summary()}; {args.rounds} rounds of {args.slice}s slices per payload")
    report.update(
        {
            "impls": labels,
            "settings": {
                "slice_s": args.slice,
                "settle_s": args.settle,
                "rounds": args.rounds,
                "warmup_s": args.warmup,
                "inflight": args.inflight,
                "client": args.client,
                "transport": args.transport if args.client == "go" else None,
                "loop": args.loop,
                "server_cpu": server_cpu,
                "client_cpu": client_cpu,
                "compiled_modules": compiled_modules(),
            },
            "payloads": {},
        }
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            servers = [
                await stack.enter_async_context(server_process(i, e, server_cpu, None))
                for i, e in zip(impls, envs, strict=True)
            ]
            # After the servers started (each pinned by its own --cpu); the Go client inherits it.
            proc.pin_cpu(client_cpu)
            addresses, pids = [a for a, _ in servers], [pid for _, pid in servers]
            clients = (
                []
                if args.client == "go"
                else [await _blocking_client(i, a) for i, a in zip(impls, addresses, strict=True)]
            )
            try:
                # One connection per thread to every server, kept for every payload.
                callers = [
                    [c.connect_caller() for c in clients] for _ in range(args.inflight if clients else 0)
                ]
                for payload in args.payload:
                    plan = schedule(labels, args.rounds)
                    targets = [labels.index(name) for _, name in plan]
                    if args.client == "go":
                        counts, sampler = await asyncio.to_thread(
                            go_load, addresses, pids, targets, payload, args
                        )
                    else:
                        counts, sampler = await asyncio.to_thread(
                            thread_load, clients, callers, pids, targets, payload, args
                        )
                    slices = to_slices(plan, counts, sampler, args)
                    report["payloads"][str(payload)] = {
                        "slices": [asdict(s) for s in slices],
                        "comparisons": [asdict(compare(slices, labels[0], o)) for o in labels[1:]],
                    }
                    print()
                    for line in summary_lines(labels, slices, payload, goals=args.client == "python"):
                        print(line)
            finally:
                for c in clients:
                    await c.close()
    except CaseFailedError as exc:
        print(f"FAILED: {exc}")
        return 1
    finally:
        shutil.rmtree(stub_dir, ignore_errors=True)
    return 0


async def _blocking_client(impl: Impl, address: str) -> BlockingClient:
    client = await load(impl).connect(address)
    if not isinstance(client, BlockingClient):
        raise SystemExit(f"{impl.name}: its client is not a BlockingClient, which interleaving needs")
    return client


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.interleave", description=__doc__.split("\n\n")[0])
    p.add_argument("impls", nargs="+", help="IMPL or IMPL@LOOP, sharing one client; the first is compared")
    p.add_argument("--payload", type=int, nargs="+", default=list(registry.PAYLOADS), help="bytes, in turn")
    p.add_argument("--rounds", type=int, default=60, help="rounds per payload: a slice each")
    p.add_argument("--slice", type=float, default=0.5, help="seconds each server gets per round")
    p.add_argument("--settle", type=float, default=0.05, help="seconds at each slice's start not counted")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before the first slice")
    p.add_argument("--inflight", type=int, default=64, help="calls in flight: client threads (goroutines)")
    p.add_argument(
        "--client",
        choices=("python", "go"),
        default="python",
        help="python: the impls' shared blocking client; go: a Go Kitex client (interop/cmd/load)",
    )
    p.add_argument("--transport", choices=GO_TRANSPORTS, default="framed", help="the Go client's framing")
    p.add_argument("--no-pin", action="store_true", help="do not pin the servers and the client to CPUs")
    p.add_argument(
        "--loop", choices=proc.LOOPS, default="asyncio", help="the servers' event loop, but IMPL@LOOP's"
    )
    p.add_argument("--json", default=str(RESULTS / "interleave-latest.json"), help="output file")
    args = p.parse_args(argv)
    if len(args.impls) < 2:
        p.error("name two or more impls (the same one twice is an A/A check of the method)")
    for name in args.impls:
        impl, loop = split_instance(name, args.loop)
        if impl not in registry.BY_NAME:
            p.error(f"unknown impl {impl!r}; choose from {', '.join(registry.BY_NAME)}")
        if loop not in proc.LOOPS:
            p.error(f"{name!r}: unknown loop {loop!r}; choose from {', '.join(proc.LOOPS)}")
    if not 0 <= args.settle < args.slice or args.rounds < 1 or args.inflight < 1:
        p.error("need 0 <= --settle < --slice, --rounds >= 1 and --inflight >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {}
    status = asyncio.run(main_async(args, report))
    if status == 0:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {out}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
