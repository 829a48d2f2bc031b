"""CPU time per request of the TTHeader benchmark pairs, server and client side, robust to contention.

``python -m bench.cpu_ttheader [impl ...] [--payload 64 4096] [--calls N] [--inflight 64] [--repeat R]``

Throughput on a shared two-core machine swings with whatever else runs; CPU time per request does not
(much). For each implementation (a ``bench/registry.py`` name with unary support, default the four
TTHeader pairs) and payload this starts the server in a child process, pinned to the first allowed
CPU, and drives it from this process, pinned to the second, with ``--inflight`` concurrent calls. After
a warm-up it reads ``time.process_time()`` (every thread of the process) in both processes, makes
exactly ``--calls`` calls, reads it again, and prints the CPU microseconds per request of each side,
plus the wall-clock rate for reference. With ``--repeat`` > 1 the median of the runs is shown.

The server child speaks a line protocol on stdin/stdout: it prints ``LISTENING host:port`` once up,
then answers each ``cpu`` line with its process CPU seconds, and exits on EOF.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import proc, registry
from bench.adapter import BlockingClient, drive_threads, load

HOST = "127.0.0.1"
DEFAULT_IMPLS = ("kitex-ttheader", "thriftpy2", "kitex-server-sync", "thriftpy2-threaded")


def _cpus() -> tuple[int | None, int | None]:
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(allowed) >= 2:
        return allowed[0], allowed[1]
    return None, None


# -- server child -------------------------------------------------------------------------------------


def _serve(impl_name: str, cpu: int | None) -> None:
    proc.pin_cpu(cpu)

    async def main() -> None:
        adapter = load(registry.get(impl_name))
        server = await adapter.start_server(HOST)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def stdin_reader() -> None:  # a thread blocked on read costs no CPU
            for line in sys.stdin:
                if line.strip() == "cpu":
                    sys.stdout.write(f"CPU {time.process_time()!r}\n")
                    sys.stdout.flush()
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=stdin_reader, daemon=True).start()
        proc.emit(proc.LISTENING, server.address)
        await done.wait()
        await server.stop()

    proc.run(main())


class _ServerProcess:
    def __init__(self, impl_name: str, cpu: int | None) -> None:
        args = [sys.executable, "-m", "bench.cpu_ttheader", "--serve", impl_name]
        if cpu is not None:
            args += ["--cpu", str(cpu)]
        self._p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._readline()
        kind, _, self.address = line.partition(" ")
        if kind != proc.LISTENING:
            raise RuntimeError(f"server {impl_name}: {line!r}")

    def _readline(self) -> str:
        assert self._p.stdout is not None
        line = self._p.stdout.readline()
        if not line:
            raise RuntimeError("server process exited")
        return line.strip()

    def cpu(self) -> float:
        assert self._p.stdin is not None
        self._p.stdin.write("cpu\n")
        self._p.stdin.flush()
        kind, _, value = self._readline().partition(" ")
        assert kind == "CPU", kind
        return float(value)

    def close(self) -> None:
        if self._p.stdin is not None:
            self._p.stdin.close()
        try:
            self._p.wait(10)
        except subprocess.TimeoutExpired:
            self._p.kill()
            self._p.wait()


# -- client (this process) ----------------------------------------------------------------------------


async def _drive(client: Any, request: Any, calls: int, inflight: int) -> None:
    remaining = calls
    call = client.unary

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call(request)

    await asyncio.gather(*(worker() for _ in range(inflight)))


async def _drive_threads(callers: list[Callable[[Any], Any]], request: Any, calls: int) -> None:
    """A blocking client's drive: one plain thread per caller (connection)."""
    tickets = itertools.count()  # next() is atomic: exactly ``calls`` calls in all
    errors: list[BaseException] = []  # and so is list.append
    await asyncio.to_thread(
        drive_threads, callers, request, lambda: next(tickets) < calls, _ignore, errors.append
    )
    if errors:
        raise RuntimeError(f"{len(errors)} load threads failed, the first with {errors[0]!r}")


def _ignore(_start: float, _end: float) -> None:
    pass


async def _measure(
    impl_name: str, server: _ServerProcess, payload: int, calls: int, inflight: int
) -> dict[str, float]:
    client = await load(registry.get(impl_name)).connect(server.address)
    try:
        request = client.request(b"x" * payload)
        if isinstance(client, BlockingClient):
            callers = [client.connect_caller() for _ in range(inflight)]

            async def drive(n: int) -> None:
                await _drive_threads(callers, request, n)
        else:

            async def drive(n: int) -> None:
                await _drive(client, request, n, inflight)

        await drive(max(2000, calls // 5))  # warm-up: connections, caches
        s0, c0, w0 = server.cpu(), time.process_time(), time.perf_counter()
        await drive(calls)
        w1, c1, s1 = time.perf_counter(), time.process_time(), server.cpu()
    finally:
        await client.close()
    return {
        "server_us": (s1 - s0) / calls * 1e6,
        "client_us": (c1 - c0) / calls * 1e6,
        "rate": calls / (w1 - w0),
    }


def run(impl_name: str, payload: int, calls: int, inflight: int) -> dict[str, float]:
    server_cpu, client_cpu = _cpus()
    server = _ServerProcess(impl_name, server_cpu)
    try:
        proc.pin_cpu(client_cpu)
        return proc.run(_measure(impl_name, server, payload, calls, inflight))
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_ttheader", description=__doc__)
    p.add_argument("impls", nargs="*", default=list(DEFAULT_IMPLS))
    p.add_argument("--payload", type=int, nargs="+", default=[64, 4096])
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON line per case as well")
    p.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.cpu)
        return 0
    print(f"{'impl':<20} {'payload':>7} {'server µs/req':>14} {'client µs/req':>14} {'calls/s':>9}")
    for payload in args.payload:
        for name in args.impls:
            registry.get(name)
            runs = [run(name, payload, args.calls, args.inflight) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{name:<20} {payload:>7} {med['server_us']:>14.1f} {med['client_us']:>14.1f} "
                f"{med['rate']:>9.0f}",
                flush=True,
            )
            if args.json:
                print(json.dumps({"impl": name, "payload": payload, "runs": runs, "median": med}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
