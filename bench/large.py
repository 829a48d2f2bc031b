"""Large messages side by side (``make bench-large``): ``python -m bench.large [options]``.

For each message size (default 64 KiB, 1 MiB and 16 MiB) and scenario, one case per implementation,
each with a fresh server process and a fresh client process (pinned to one CPU each, as bench/run.py):

- ``unary``: ``--inflight`` (8) tasks calling ``Unary`` in a loop; ``bidi-pipelined``: one ``Bidi``
  stream, at most ``--inflight`` messages unanswered (both bench/clients.py's load generators, for
  ``--duration`` seconds after ``--warmup``);
- ``server-stream``: one ``ServerStream`` call whose server sends ``--total`` bytes (default 1 GiB)
  in messages of the size, and the client reads them all (one way).

Implementations: kitex-h2 (GRPC_H2), kitex-grpc (grpcio transport), grpc.aio, grpclib, kitex-ttheader
and thriftpy2 (Thrift, unary only), and raw-socket: asyncio streams moving the same bytes with a length
prefix and nothing else (bench/impl_raw.py), the floor. Every process accepts messages up to twice the
largest size (``KITEX_BENCH_MAX_MESSAGE``).

Reported per case: MB/s of message payload (MB = 2**20 bytes; a unary call or an echoed message counts
its payload once), p50/p99 latency (unary and bidi: completion minus start), the CPU each process spent
per MB moved during the measured span (milliseconds of user + system time), and each process's peak
RSS over its whole life (the client's from getrusage, the server's ``VmHWM`` from /proc). The JSON goes
to bench/results/large-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import adapter, proc, registry, stubs
from bench.clients import CpuMeter, Recorder, Window, bidi_pipelined, unary
from bench.run import CaseFailedError, _child_env, _stop, probe, server_process

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
MiB = 1 << 20
UNARY, BIDI, STREAM = registry.UNARY, registry.BIDI_PIPELINED, "server-stream"
SCENARIOS = (UNARY, BIDI, STREAM)
SIZES = (64 * 1024, MiB, 16 * MiB)
IMPLS = ("kitex-h2", "kitex-grpc", "grpc-aio", "grpclib", "kitex-ttheader", "thriftpy2", "raw-socket")
FLOOR = "raw-socket"
# What each implementation can run (Thrift has no streaming calls).
SUPPORTS = {
    **{name: frozenset(SCENARIOS) for name in ("kitex-h2", "kitex-grpc", "grpc-aio", "grpclib", FLOOR)},
    "kitex-ttheader": frozenset({UNARY}),
    "thriftpy2": frozenset({UNARY}),
}
CLIENT_SLACK = 120.0  # seconds a client may take past its expected span before the case fails


@dataclass
class CaseResult:
    scenario: str
    size: int
    impl: str
    messages: int = 0
    seconds: float = 0.0
    mb_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_cpu_ms_per_mb: float | None = None
    client_cpu_ms_per_mb: float | None = None
    server_peak_rss_mb: float | None = None
    client_peak_rss_mb: float | None = None
    errors: int = 0
    error: str = ""


def peak_rss_mb_self() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def peak_rss_mb(pid: int) -> float | None:
    """``VmHWM`` of a live process, in MiB (None where /proc does not say)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- the client process ----------------------------------------------------------------------------------


async def read_server_stream(client: Any, size: int, count: int) -> int:
    """One ServerStream call of ``count`` messages of ``size`` bytes, read to its end and checked."""
    request = client.request(b"")
    fields = adapter.stream_request_fields(count, size)
    request.message, request.seq = fields["message"], fields["seq"]
    got = 0
    async for reply in client.server_stream(request):
        if len(reply.payload) != size:
            raise ValueError(f"a {len(reply.payload)}-byte message in a stream of {size}")
        got += 1
    if got != count:
        raise ValueError(f"the stream ended after {got} of {count} messages")
    return got


async def server_stream(client: Any, size: int, total: int, server_pid: int | None) -> dict[str, Any]:
    """One ServerStream call of ``total // size`` messages, read to its end, after a short warm-up one."""
    count = max(1, total // size)

    await read_server_stream(client, size, min(count, 4))
    server0 = proc.process_cpu_seconds(server_pid) if server_pid else None
    client0, start = time.process_time(), time.perf_counter()
    got = await read_server_stream(client, size, count)
    seconds = time.perf_counter() - start
    server1 = proc.process_cpu_seconds(server_pid) if server_pid else None
    mb = got * size / MiB
    return {
        "messages": got,
        "seconds": seconds,
        "mb_per_s": mb / seconds,
        "client_cpu_ms_per_mb": (time.process_time() - client0) * 1e3 / mb,
        "server_cpu_ms_per_mb": None
        if server0 is None or server1 is None
        else (server1 - server0) * 1e3 / mb,
    }


async def windowed(client: Any, scenario: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Unary or bidi-pipelined for ``--duration`` seconds after ``--warmup`` (bench/clients.py's loops)."""
    window = Window.after(args.warmup, args.duration)
    meter = CpuMeter(window, args.server_pid)
    drive = unary if scenario == UNARY else bidi_pipelined
    rec: Recorder = await drive(client, size, window, args.inflight)
    result = rec.result()
    meter.fill(result)
    mb_per_call = size / MiB
    if rec.first_error:
        raise RuntimeError(rec.first_error)
    if not result.count:
        raise RuntimeError("no message completed inside the measured window")

    def per_mb(us_per_call: float | None) -> float | None:
        return None if us_per_call is None else us_per_call / 1e3 / mb_per_call

    return {
        "messages": result.count,
        "seconds": result.seconds,
        "mb_per_s": result.rate * mb_per_call,
        "p50_ms": result.p50_us / 1e3,
        "p99_ms": result.p99_us / 1e3,
        "server_cpu_ms_per_mb": per_mb(result.server_cpu_us),
        "client_cpu_ms_per_mb": per_mb(result.client_cpu_us),
    }


async def client_main(args: argparse.Namespace) -> dict[str, Any]:
    client = await adapter.load(registry.get(args.impl)).connect(args.address)
    try:
        if args.scenario == STREAM:
            out = await server_stream(client, args.size, args.total, args.server_pid)
        else:
            out = await windowed(client, args.scenario, args.size, args)
    finally:
        await client.close()
    out["client_peak_rss_mb"] = peak_rss_mb_self()
    return out


# -- the runner ------------------------------------------------------------------------------------------


async def run_case(
    impl: registry.Impl, scenario: str, size: int, args: argparse.Namespace, env: dict[str, str]
) -> CaseResult:
    result = CaseResult(scenario, size, impl.name)
    server_cpu, client_cpu = (None, None) if args.no_pin else (0, 1)
    try:
        async with server_process(impl, env, server_cpu, None) as (address, pid):
            cmd = [
                sys.executable, "-m", "bench.large", "--client", impl.name, address,
                "--scenario", scenario, "--size", str(size), "--total", str(args.total),
                "--duration", str(args.duration), "--warmup", str(args.warmup),
                "--inflight", str(args.inflight), "--server-pid", str(pid),
            ]  # fmt: skip
            if client_cpu is not None:
                cmd += ["--cpu", str(client_cpu)]
            p = await asyncio.create_subprocess_exec(
                *cmd, cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
            )
            budget = args.warmup + args.duration + CLIENT_SLACK + args.total / (4 * MiB)
            try:
                out, _ = await asyncio.wait_for(p.communicate(), budget)
            except TimeoutError:
                raise CaseFailedError(f"client did not finish within {budget:.0f}s") from None
            finally:
                await _stop(p)
            result.server_peak_rss_mb = peak_rss_mb(pid)  # before the server exits
        for line in out.decode().splitlines():
            kind, _, rest = line.partition(" ")
            if kind == proc.RESULT:
                for key, value in json.loads(rest).items():
                    setattr(result, key, value)
                return result
            if kind in (proc.UNAVAILABLE, "ERROR"):
                raise CaseFailedError(rest)
        raise CaseFailedError(f"client exited {p.returncode} without a result")
    except CaseFailedError as exc:
        result.errors, result.error = 1, str(exc)[:300]
        return result


def plan(impls: list[str], sizes: list[int], scenarios: list[str]) -> list[tuple[str, int, str]]:
    """(scenario, size, impl) for every case that exists, the floor first in each group."""
    ordered = [FLOOR, *(i for i in impls if i != FLOOR)] if FLOOR in impls else impls
    return [
        (scenario, size, impl)
        for scenario in scenarios
        for size in sizes
        for impl in ordered
        if scenario in SUPPORTS[impl]
    ]


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def size_label(size: int) -> str:
    if size % MiB == 0:
        return f"{size // MiB} MiB"
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def table(results: list[CaseResult]) -> str:
    """A Markdown table, one row per case; ``vs floor`` divides by raw-socket's MB/s of the same group."""
    floor = {(r.scenario, r.size): r.mb_per_s for r in results if r.impl == FLOOR and not r.errors}
    head = (
        "| scenario | size | impl | MB/s | vs floor | p50 ms | p99 ms | CPU ms/MB srv | CPU ms/MB cli "
        "| peak RSS MiB srv | peak RSS MiB cli |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in results:
        if r.errors:
            lines.append(f"| {r.scenario} | {size_label(r.size)} | {r.impl} | FAILED: {r.error} |" + " |" * 7)
            continue
        base = floor.get((r.scenario, r.size))
        ratio = f"{r.mb_per_s / base:.2f}x" if base else "-"
        lines.append(
            f"| {r.scenario} | {size_label(r.size)} | {r.impl} | {r.mb_per_s:.0f} | {ratio} "
            f"| {fmt(r.p50_ms)} | {fmt(r.p99_ms)} | {fmt(r.server_cpu_ms_per_mb, 2)} "
            f"| {fmt(r.client_cpu_ms_per_mb, 2)} | {fmt(r.server_peak_rss_mb, 0)} "
            f"| {fmt(r.client_peak_rss_mb, 0)} |"
        )
    return "\n".join(lines)


async def run_all(args: argparse.Namespace) -> list[CaseResult]:
    with tempfile.TemporaryDirectory(prefix="bench-stubs-") as tmp:
        stub_dir = Path(tmp)
        stubs.generate(stub_dir)
        env = _child_env(stub_dir, proc.loop_name())
        env[adapter.MAX_MESSAGE_ENV] = str(2 * max(args.sizes) + MiB)
        usable: list[str] = []
        for name in args.impls:
            status, why = await probe(registry.get(name), env)
            if status == "ok":
                usable.append(name)
            else:
                print(f"SKIP {name}: {why}", flush=True)
        results: list[CaseResult] = []
        for scenario, size, name in plan(usable, args.sizes, args.scenarios):
            result = await run_case(registry.get(name), scenario, size, args, env)
            results.append(result)
            state = f"FAILED {result.error}" if result.errors else f"{result.mb_per_s:.0f} MB/s"
            print(f"{scenario} {size_label(size)} {name}: {state}", flush=True)
    return results


def write_json(target: str, args: argparse.Namespace, results: list[CaseResult]) -> None:
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": len(os.sched_getaffinity(0)),
        "loop": proc.loop_name(),
        "compiled": proc.compiled_summary(),
        "args": {k: v for k, v in vars(args).items() if k != "client"},
    }
    path.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.large",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    p.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), help="message sizes in bytes")
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    p.add_argument("--total", type=int, default=1 << 30, help="bytes per server stream (default 1 GiB)")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds (unary, bidi)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (unary, bidi)")
    p.add_argument("--inflight", type=int, default=8, help="calls / messages in flight (default 8)")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and client to one CPU each")
    p.add_argument("--json", default=str(RESULTS / "large-latest.json"), help="'' for none")
    # the client process (started by the runner): --client <impl> <address> ...
    p.add_argument("--client", nargs=2, metavar=("IMPL", "ADDRESS"), help=argparse.SUPPRESS)
    p.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client is None:
        results = asyncio.run(run_all(args))
        print()
        print(table(results))
        if args.json:
            write_json(args.json, args, results)
        return 1 if any(r.errors for r in results) else 0
    args.impl, args.address = args.client
    proc.pin_cpu(args.cpu)
    try:
        out = proc.run(client_main(args))
    except adapter.UnavailableError as exc:
        proc.emit(proc.UNAVAILABLE, str(exc))
        return proc.EXIT_UNAVAILABLE
    except Exception as exc:
        proc.emit("ERROR", f"{type(exc).__name__}: {exc}"[:300])
        return 1
    proc.emit(proc.RESULT, json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
