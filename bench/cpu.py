"""CPU time per call, server and client: ``python bench/cpu.py [--only NAME...] [--repeat N]``.

Throughput on a shared two-core machine swings with whatever else runs; the CPU time each process
spends per completed call hardly does. For each case this starts a server process (pinned to the first
CPU) and a client process (pinned to the second), runs the same load generators as ``bench/run.py``
(``bench.clients.SCENARIOS``), and samples ``time.process_time()`` in both processes at the start and
the end of the measured window (the client signals the server with SIGUSR1 at those two instants).
``process_time`` counts every thread of the process, so grpcio's C-core threads are included.

Output, per case: rate (calls or messages per second), server and client CPU microseconds per call,
and their sum. ``--only`` takes impl names, scenario names and payload sizes, as ``bench/run.py``.
With ``--repeat N`` each case runs N times and the median of each figure is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import proc, registry, stubs
from bench.adapter import load

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CPU_LINE = "CPU"


# -- the server process ------------------------------------------------------------------------------


async def _serve(impl_name: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def sample() -> None:
        proc.emit(CPU_LINE, repr(time.process_time()))

    loop.add_signal_handler(signal.SIGUSR1, sample)
    server = await load(registry.get(impl_name)).start_server(HOST)
    try:
        proc.emit(proc.LISTENING, server.address)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 600)
    finally:
        await server.stop()


# -- the client process ------------------------------------------------------------------------------


async def _client(args: argparse.Namespace) -> dict[str, float]:
    from bench.clients import SCENARIOS, Window

    client = await load(registry.get(args.impl)).connect(args.address)
    loop = asyncio.get_running_loop()
    marks: list[float] = []

    def mark() -> None:
        marks.append(time.process_time())
        os.kill(args.server_pid, signal.SIGUSR1)

    try:
        window = Window.after(args.warmup, args.duration)
        now = time.perf_counter()
        loop.call_later(window.start - now, mark)
        loop.call_later(window.end - now, mark)
        rec = await SCENARIOS[args.scenario](client, args.payload, window, args.inflight)
    finally:
        await client.close()
    result = rec.result()
    cpu = marks[1] - marks[0] if len(marks) == 2 else float("nan")
    return {"count": result.count, "rate": result.rate, "client_cpu_s": cpu, "errors": result.errors}


# -- the runner --------------------------------------------------------------------------------------


async def _case(
    impl: str, scenario: str, payload: int, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, float]:
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = (allowed[0], allowed[1]) if len(allowed) >= 2 else None
    server_cmd = [sys.executable, "-m", "bench.cpu", "serve", impl]
    if pin:
        server_cmd = ["taskset", "-c", str(pin[0]), *server_cmd]
    srv = await asyncio.create_subprocess_exec(
        *server_cmd, cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert srv.stdout is not None
        line = (await asyncio.wait_for(srv.stdout.readline(), 30)).decode().strip()
        kind, _, address = line.partition(" ")
        if kind != proc.LISTENING:
            raise RuntimeError(f"server: {line}")
        client_cmd = [
            sys.executable, "-m", "bench.cpu", "client", impl, address, "--server-pid", str(srv.pid),
            "--scenario", scenario, "--payload", str(payload), "--duration", str(args.duration),
            "--warmup", str(args.warmup), "--inflight", str(args.inflight),
        ]  # fmt: skip
        if pin:
            client_cmd = ["taskset", "-c", str(pin[1]), *client_cmd]
        cli = await asyncio.create_subprocess_exec(
            *client_cmd, cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(cli.communicate(), args.warmup + args.duration + 60)
        result: dict[str, float] = {}
        for text in out.decode().splitlines():
            kind, _, rest = text.partition(" ")
            if kind == proc.RESULT:
                result = json.loads(rest)
        if not result:
            raise RuntimeError(f"client exited {cli.returncode} without a result")
        samples: list[float] = []
        while len(samples) < 2:
            text = (await asyncio.wait_for(srv.stdout.readline(), 10)).decode().strip()
            kind, _, rest = text.partition(" ")
            if kind == CPU_LINE:
                samples.append(float(rest))
            elif not text:
                break
        count = max(1, int(result["count"]))
        server_cpu = samples[1] - samples[0] if len(samples) == 2 else float("nan")
        return {
            "rate": result["rate"],
            "server_us": server_cpu / count * 1e6,
            "client_us": result["client_cpu_s"] / count * 1e6,
            "errors": result["errors"],
        }
    finally:
        if srv.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                srv.terminate()
            try:
                await asyncio.wait_for(srv.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    srv.kill()
                await srv.wait()


async def _run(args: argparse.Namespace) -> int:
    impls: list[str] = []
    scenarios: list[str] = []
    payloads: list[int] = []
    for name in args.only:
        if name in registry.BY_NAME:
            impls.append(name)
        elif name in registry.SCENARIOS:
            scenarios.append(name)
        elif name.isdigit():
            payloads.append(int(name))
        else:
            raise SystemExit(f"--only: unknown name {name!r}")
    impls = impls or ["kitex-h2", "grpclib", "grpc-aio"]
    scenarios = scenarios or [registry.UNARY, registry.BIDI_PIPELINED]
    payloads = payloads or list(registry.PAYLOADS)
    stub_dir = Path(tempfile.mkdtemp(prefix="bench-stubs-"))
    try:
        stubs.generate(stub_dir)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env[stubs.ENV_VAR] = str(stub_dir)
        env.setdefault("PYTHONHASHSEED", "0")
        print(f"{'scenario':<15} {'payload':>7} {'impl':<10} {'rate/s':>9}", end="")
        print(f" {'srv us':>8} {'cli us':>8} {'sum':>8}")
        rows = []
        for scenario in scenarios:
            for payload in payloads:
                for impl in impls:
                    if scenario not in registry.get(impl).scenarios:
                        continue
                    runs = [await _case(impl, scenario, payload, args, env) for _ in range(args.repeat)]
                    med = {
                        k: statistics.median(r[k] for r in runs) for k in ("rate", "server_us", "client_us")
                    }
                    errors = sum(r["errors"] for r in runs)
                    rows.append({"scenario": scenario, "payload": payload, "impl": impl, **med, "runs": runs})
                    srv, cli = med["server_us"], med["client_us"]
                    print(
                        f"{scenario:<15} {payload:>7} {impl:<10} {med['rate']:>9,.0f} {srv:>8.1f}"
                        f" {cli:>8.1f} {srv + cli:>8.1f}" + (f"  {errors:.0f} errors" if errors else ""),
                        flush=True,
                    )
        if args.json:
            await asyncio.to_thread(Path(args.json).write_text, json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(stub_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        proc.run(_serve(argv[1]))
        return 0
    if argv[:1] == ["client"]:
        p = argparse.ArgumentParser(prog="bench.cpu client")
        p.add_argument("impl")
        p.add_argument("address")
        p.add_argument("--server-pid", type=int, required=True)
        p.add_argument("--scenario", default=registry.UNARY)
        p.add_argument("--payload", type=int, default=64)
        p.add_argument("--duration", type=float, default=3.0)
        p.add_argument("--warmup", type=float, default=1.0)
        p.add_argument("--inflight", type=int, default=64)
        cargs = p.parse_args(argv[1:])
        proc.emit(proc.RESULT, json.dumps(proc.run(_client(cargs))))
        return 0
    p = argparse.ArgumentParser(
        prog="bench/cpu.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", nargs="+", default=[], metavar="NAME")
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--repeat", type=int, default=1, help="runs per case; medians are reported")
    p.add_argument("--json", default="", help="also write the figures here")
    args = p.parse_args(argv)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    raise SystemExit(main())
