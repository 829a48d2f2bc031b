"""1 worker against 2 workers, one Go Kitex load client, interleaved: ``python -m bench.workers``.

For each transport (``ttheader``: Thrift over TTHeader; ``grpc_h2``: gRPC, our HTTP/2 server) it
starts two servers with ``kitex-grpc serve bench.workers_app:make_server``, one with ``--workers 1``
and one with ``--workers 2``, and runs ``interop/cmd/load`` (Go Kitex client; ``-transport grpc`` for
GRPC_H2) against both in one run: every goroutine calls server 0 or server 1 as the slice schedule
says (``0,1,1,0`` repeated), so a change of the shared machine's speed hits both sides of each
round. Nothing is pinned: the servers' processes and the client share the machine's cores, as they
would in production on one host.

CPU is read from ``/proc/<pid>/stat`` at every slice boundary for each process: the supervisor, each
worker and the client. Printed per transport: calls/s of each server (median over its slices), the
ratio 2 workers / 1 worker per round (median and geometric mean), and each process's CPU use during
its server's slices (100% = one core). The JSON goes to ``bench/results/workers-latest.json``.

Needs the load client: ``make interop-build`` (``.cache/interop/bin/load``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOAD = REPO / ".cache" / "interop" / "bin" / "load"
RESULTS = REPO / "bench" / "results"
_READY = re.compile(r"^serving (\S+) transport=\w+ pids=([\d,]+)")
_TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / _TICK  # all but idle and iowait


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class Server:
    def __init__(self, transport: str, workers: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_TRANSPORT": transport}
        argv = [sys.executable, "-m", "kitex_grpc.cli", "serve", "bench.workers_app:make_server"]
        self.proc = subprocess.Popen(
            [*argv, "--workers", str(workers)], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the ready line (the process exits on failure: EOF)
            m = _READY.match(line)
            if m:
                self.address = m.group(1)
                self.workers = [int(p) for p in m.group(2).split(",")]
                return
        raise RuntimeError(f"server with {workers} workers did not start (exit {self.proc.wait()})")

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *self.workers]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_transport(transport: str, args: argparse.Namespace) -> dict[str, Any]:
    servers = [Server(transport, 1), Server(transport, 2)]
    try:
        order = [0, 1, 1, 0] * (args.rounds // 2) + ([0, 1] if args.rounds % 2 else [])
        load = subprocess.Popen(
            [
                str(LOAD), "-addr", ",".join(s.address for s in servers), "-order", ",".join(map(str, order)),
                "-slice", f"{args.slice}s", "-settle", f"{args.settle}s", "-warmup", "2s",
                "-transport", "grpc" if transport == "grpc_h2" else "ttheader",
                "-concurrency", str(args.concurrency), "-payload", "64", "-grpc-conns", str(args.grpc_conns),
            ],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert load.stdout is not None
        start_ns = int(load.stdout.readline().split()[1])
        pids = {"client": [load.pid], "1 worker": servers[0].pids, "2 workers": servers[1].pids}
        samples: list[dict[int, float]] = []

        def sample_at_boundaries() -> None:  # a benchmark clock, not synchronisation
            for k in range(len(order) + 1):
                wake = start_ns / 1e9 + k * args.slice + (args.settle if k < len(order) else 0.0)
                time.sleep(max(0.0, wake - time.time()))
                sample = {pid: cpu_seconds(pid) for group in pids.values() for pid in group}
                sample[0] = machine_busy()  # key 0: the whole machine
                samples.append(sample)

        sampler = threading.Thread(target=sample_at_boundaries)
        sampler.start()
        rest = load.stdout.read()
        sampler.join()
        code = load.wait()
        result = json.loads(rest.split("RESULT ", 1)[1])
        if code != 0 or result["errors"]:
            raise RuntimeError(f"load client failed: {result}")
    finally:
        for s in servers:
            s.stop()
    counted = args.slice - args.settle
    rates: dict[int, list[float]] = {0: [], 1: []}
    cpu: dict[int, dict[str, list[float]]] = {0: {}, 1: {}}
    for k, target in enumerate(order):
        rates[target].append(result["counts"][k] / counted)
        span = args.slice - args.settle if k + 1 < len(samples) else args.slice
        if k + 1 < len(samples):
            ours = sum(samples[k + 1][p] - samples[k][p] for g in pids.values() for p in g)
            machine = samples[k + 1][0] - samples[k][0]
            cpu[target].setdefault("other processes", []).append(100.0 * (machine - ours) / span)
        for group, group_pids in pids.items():
            for i, pid in enumerate(group_pids):
                role = "supervisor" if i == 0 else f"worker {i}"
                name = group if group == "client" else f"{group}: {role}"
                used = samples[k + 1][pid] - samples[k][pid] if k + 1 < len(samples) else 0.0
                cpu[target].setdefault(name, []).append(100.0 * used / span)

    def server_cpu(target: int, group: str) -> float:  # percent of one core, median per process, summed
        return sum(statistics.median(v) for n, v in cpu[target].items() if n.startswith(group))

    ratios = [rates[1][r] / rates[0][r] for r in range(min(len(rates[0]), len(rates[1]))) if rates[0][r]]
    return {
        "transport": transport,
        "rate_1_worker": statistics.median(rates[0]),
        "rate_2_workers": statistics.median(rates[1]),
        "ratio_median": statistics.median(ratios),
        "ratio_geomean": math.exp(statistics.fmean(math.log(r) for r in ratios)),
        "rounds": len(ratios),
        # CPU time of the server's processes per call during its slices (the number that scales)
        "us_per_call_1": 1e4 * server_cpu(0, "1 worker") / statistics.median(rates[0]),
        "us_per_call_2": 1e4 * server_cpu(1, "2 workers") / statistics.median(rates[1]),
        "client_us_per_call": 1e4
        * statistics.fmean(
            [
                statistics.median(cpu[0]["client"]) / statistics.median(rates[0]),
                statistics.median(cpu[1]["client"]) / statistics.median(rates[1]),
            ]
        ),
        "cpu_percent": {
            f"during {label} slices": {name: round(statistics.median(v), 1) for name, v in cpu[t].items()}
            for t, label in ((0, "1-worker"), (1, "2-worker"))
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transports", nargs="+", default=["ttheader", "grpc_h2"])
    parser.add_argument("--rounds", type=int, default=10, help="slices per server (default 10)")
    parser.add_argument("--slice", type=float, default=1.0, help="seconds per slice (default 1)")
    parser.add_argument("--settle", type=float, default=0.2, help="seconds of each slice not counted")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight (default 64)")
    parser.add_argument("--grpc-conns", type=int, default=32, help="gRPC connections per server (default 32)")
    args = parser.parse_args()
    if not LOAD.exists():
        raise SystemExit(f"{LOAD} is missing: make interop-build")
    results = [run_transport(t, args) for t in args.transports]
    RESULTS.mkdir(exist_ok=True)
    out = {"cores": len(os.sched_getaffinity(0)), "args": vars(args), "results": results}
    (RESULTS / "workers-latest.json").write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        print(
            f"{r['transport']}: 1 worker {r['rate_1_worker']:.0f} calls/s, "
            f"2 workers {r['rate_2_workers']:.0f} calls/s; 2/1 = {r['ratio_median']:.2f}x "
            f"(median of {r['rounds']} rounds; geomean {r['ratio_geomean']:.2f}x)"
        )
        print(
            f"  server CPU per call: 1 worker {r['us_per_call_1']:.1f} us, "
            f"2 workers {r['us_per_call_2']:.1f} us; client {r['client_us_per_call']:.1f} us"
        )
        for phase, procs in r["cpu_percent"].items():
            print(f"  CPU % {phase}: " + ", ".join(f"{n} {v}" for n, v in procs.items()))


if __name__ == "__main__":
    main()
