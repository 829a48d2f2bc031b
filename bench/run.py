"""Benchmark entry (``make bench``): ``python bench/run.py [--duration S] [--only NAME...] [--quick]``.

Every case starts a fresh server process (pinned to one CPU) and a fresh client process (pinned to the
other), waits for the server's ``LISTENING`` line, runs the client's warm-up and measured window, and
terminates the server, whatever happens. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import proc, registry, report, stubs
from bench.registry import Impl
from kitex_grpc.compiled import compiled_modules

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
HOST_LINE_TIMEOUT = 30.0  # seconds for a server to print its address
PROBE_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0  # SIGTERM, then this long, then SIGKILL


class CaseFailedError(Exception):
    pass


def _child_env(stub_dir: Path, loop: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env[stubs.ENV_VAR] = str(stub_dir)
    env[proc.LOOP_ENV] = loop
    env.setdefault("PYTHONHASHSEED", "0")
    return env


async def _stop(p: asyncio.subprocess.Process) -> None:
    """Terminate a child we started, by its pid; kill it if it does not exit in time."""
    if p.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        p.terminate()
    try:
        await asyncio.wait_for(p.wait(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        await p.wait()


@contextlib.asynccontextmanager
async def server_process(
    impl: Impl, env: dict[str, str], cpu: int | None, profile: Path | None
) -> AsyncIterator[tuple[str, int]]:
    """Start the server, yield its address (and pid) once it prints it, and always terminate it."""
    cmd = [sys.executable, "-m", "bench.servers", impl.name, "-"]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    p = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert p.stdout is not None
        try:
            line = (await asyncio.wait_for(p.stdout.readline(), HOST_LINE_TIMEOUT)).decode().strip()
        except TimeoutError:
            raise CaseFailedError(
                f"server did not report an address within {HOST_LINE_TIMEOUT:.0f}s"
            ) from None
        kind, _, rest = line.partition(" ")
        if kind != proc.LISTENING:
            raise CaseFailedError(
                rest if kind == proc.UNAVAILABLE else f"server exited: {line or 'no output'}"
            )
        yield rest, p.pid
    finally:
        await _stop(p)


async def client_process(
    impl: Impl,
    address: str,
    server_pid: int,
    scenario: str,
    payload: int,
    args: argparse.Namespace,
    env: dict[str, str],
    cpu: int | None,
    profile: Path | None,
) -> dict[str, object]:
    cmd = [
        sys.executable,
        "-m",
        "bench.clients",
        impl.name,
        address,
        "--scenario",
        scenario,
        "--payload",
        str(payload),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--inflight",
        str(args.inflight),
        "--server-pid",
        str(server_pid),
    ]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    p = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
    )
    budget = args.warmup + args.duration + 60.0
    try:
        out, _ = await asyncio.wait_for(p.communicate(), budget)
    except TimeoutError:
        raise CaseFailedError(f"client did not finish within {budget:.0f}s") from None
    finally:
        await _stop(p)
    for line in out.decode().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == proc.RESULT:
            result: dict[str, object] = json.loads(rest)
            return result
        if kind == proc.UNAVAILABLE:
            raise CaseFailedError(rest)
    raise CaseFailedError(f"client exited {p.returncode} without a result")


async def probe(impl: Impl, env: dict[str, str]) -> tuple[str, str]:
    """("ok", ""), ("unavailable", why) or ("error", what crashed), by constructing server and client."""
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.servers", impl.name, "--probe", cwd=REPO, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(p.communicate(), PROBE_TIMEOUT)
    except TimeoutError:
        return "error", f"probe did not finish within {PROBE_TIMEOUT:.0f}s"
    finally:
        await _stop(p)
    kind, _, rest = out.decode().strip().partition(" ")
    if kind == "OK":
        return "ok", ""
    if kind == proc.UNAVAILABLE:
        return "unavailable", rest
    tail = err.decode().strip().splitlines()[-1:] or [f"exit status {p.returncode}"]
    return "error", f"probe crashed: {tail[0]}"


def select(names: list[str]) -> tuple[list[Impl], list[str], list[int], set[str]]:
    """Split ``--only`` names into impls, scenarios and payload sizes (none named = all)."""
    impls, scenarios, payloads = [], [], []
    for name in names:
        if name in registry.BY_NAME:
            impls.append(registry.BY_NAME[name])
        elif name in registry.SCENARIOS:
            scenarios.append(name)
        elif name.rstrip("B").isdigit() and int(name.rstrip("B")) > 0:
            payloads.append(int(name.rstrip("B")))
        else:
            choices = ", ".join([*registry.BY_NAME, *registry.SCENARIOS, "<bytes>"])
            raise SystemExit(f"--only: unknown name {name!r}; choose from {choices}")
    explicit = {i.name for i in impls}
    if impls:
        chosen = [i for i in registry.IMPLS if i.name in explicit]
    else:  # everything but the reference servers, which run only when named
        chosen = [i for i in registry.IMPLS if not i.reference]
    return chosen, scenarios or list(registry.SCENARIOS), payloads or list(registry.PAYLOADS), explicit


def cpus(pin: bool) -> tuple[int | None, int | None]:
    """(server CPU, client CPU): two different CPUs when this process may use at least two."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else (None, None)


async def main_async(args: argparse.Namespace) -> int:
    impls, scenarios, payloads, explicit = select(args.only)
    if args.profile:  # one case: the unary path unless a scenario was named
        impls = [i for i in impls if i.name in explicit] or [registry.BY_NAME[registry.PROFILE_IMPL]]
        scenarios = scenarios if args.only and set(scenarios) != set(registry.SCENARIOS) else [registry.UNARY]
        scenarios, payloads = scenarios[:1], payloads[:1]
    server_cpu, client_cpu = cpus(not args.no_pin)
    settings = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "inflight": args.inflight,
        "rounds": args.rounds,
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "profile": args.profile,
        "loop": args.loop,
        # mypyc's extensions in use (kitex_grpc/compiled.py): the figures of a plain-Python build differ
        "compiled_modules": compiled_modules(),
    }
    print(f"kitex_grpc {proc.compiled_summary()}")
    run = report.Run(settings)
    stub_dir = Path(tempfile.mkdtemp(prefix="bench-stubs-"))
    try:
        for flavour, err in stubs.generate(stub_dir).items():
            print(f"note: {flavour} stubs not generated: {err.splitlines()[0]}")
        env = _child_env(stub_dir, args.loop)
        probes = await asyncio.gather(*(probe(i, env) for i in impls))
        available: list[Impl] = []
        broken = False
        for impl, (kind, reason) in zip(impls, probes, strict=True):
            if kind == "unavailable":
                run.skipped[impl.name] = reason
                print(f"SKIP {impl.name}: not available in this build: {reason}")
            elif kind == "error":  # a bug, not a missing feature: say so loudly and fail the run
                broken = True
                run.skipped[impl.name] = f"ERROR {reason}"
                print(f"ERROR {impl.name}: {reason}")
        for impl in impls:
            if impl.name in run.skipped:
                continue
            partner = _kitex_partner(impl)
            if partner and partner.name in run.skipped and not explicit & {partner.name, impl.name}:
                run.skipped[impl.name] = f"baseline of {partner.name}, which is unavailable"
                print(
                    f"SKIP {impl.name}: baseline of {partner.name}, which is unavailable "
                    f"(run it alone with --only {impl.name})"
                )
                continue
            available.append(impl)
        one_round = [(s, n, i) for s in scenarios for n in payloads for i in available if s in i.scenarios]
        # Rounds pass over every case in turn, so a slow spell of the machine lands on one round of
        # each case, not on every round of one. Even rounds pass in reverse order: a pair's two cases
        # swap places, so neither always runs first or always follows the same case.
        cases = [
            (r, *case)
            for r in range(1, args.rounds + 1)
            for case in (one_round if r % 2 else one_round[::-1])
        ]
        started = time.monotonic()
        profiles: list[Path] = []
        for k, (round_, scenario, payload, impl) in enumerate(cases, 1):
            row = report.Row(scenario, payload, impl.name, impl.baseline, registry.SCENARIO_UNIT[scenario])
            row.round = round_
            srv_prof = cli_prof = None
            if args.profile:
                RESULTS.mkdir(parents=True, exist_ok=True)
                path = RESULTS / f"profile-{args.profile}-{impl.name}-{scenario}-{payload}.prof"
                srv_prof, cli_prof = (path, None) if args.profile == "server" else (None, path)
                profiles.append(path)
            label = f"[{k:2}/{len(cases)}] {scenario:<15} {payload:>5} B  {impl.name:<18}"
            print(label, end=" ", flush=True)
            try:
                async with server_process(impl, env, server_cpu, srv_prof) as (address, pid):
                    figures = await client_process(
                        impl, address, pid, scenario, payload, args, env, client_cpu, cli_prof
                    )
                for key, value in figures.items():
                    setattr(row, key, value)
                errors = f"  {row.errors} errors: {row.first_error}" if row.errors else ""
                print(f"{row.rate:>10,.0f} {row.unit}  p50 {row.p50_us / 1000:.2f} ms", end="")
                print(f"  p99 {row.p99_us / 1000:.2f} ms{errors}")
            except CaseFailedError as exc:
                row.failed = str(exc)
                print(f"FAILED: {exc}")
            run.rows.append(row)
        elapsed = time.monotonic() - started
    finally:
        shutil.rmtree(stub_dir, ignore_errors=True)
    report.fill_ratios(run.rows)
    run.summary = report.summarize(run.rows)
    print()
    print(report.table(run.rows))
    if args.rounds > 1:
        print(f"\nOver {args.rounds} rounds (medians; the ratio's range is over the per-round ratios):\n")
        print(report.summary_table(run.summary))
    print()
    for line in report.goal_lines(run.rows, args.inflight):
        print(line)
    print(f"{len(run.rows)} cases in {elapsed:.0f}s")
    if args.profile:
        for path in profiles:
            if path.exists():
                print(
                    f"\n=== {path.relative_to(REPO)}: top 25 by tottime (rates above ran under cProfile) ==="
                )
                print(report.profile_summary(path, 25))
        return 0 if not broken and all(not r.failed for r in run.rows) else 1
    out = Path(args.json)
    report.write_json(run, out)
    print(f"wrote {out}")
    return 0 if not broken and all(not r.failed and not r.errors for r in run.rows) else 1


def _kitex_partner(impl: Impl) -> Impl | None:
    """The kitex impl whose baseline ``impl`` is, if any."""
    return next((i for i in registry.IMPLS if i.baseline == impl.name), None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per case (default 3)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per case (default 1)")
    p.add_argument("--quick", action="store_true", help="1 s measured, 0.3 s warm-up: a smoke run")
    p.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="NAME",
        help="impls ("
        + ", ".join(registry.BY_NAME)
        + "), scenarios ("
        + ", ".join(registry.SCENARIOS)
        + ") or payload bytes (64, 4096)",
    )
    p.add_argument("--inflight", type=int, default=64, help="calls/messages in flight (default 64)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every case this many times, one pass over all cases per round; report medians",
    )
    p.add_argument(
        "--profile",
        choices=("client", "server"),
        default=None,
        help="cProfile one side of the kitex-grpc unary case into bench/results/*.prof",
    )
    p.add_argument(
        "--loop",
        choices=proc.LOOPS,
        default="asyncio",
        help="event loop of every server and client process, baselines included (default asyncio)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin server and client to separate CPUs")
    p.add_argument("--json", default=str(RESULTS / "latest.json"), help="where to write the results")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 1.0, 0.3
    if not (0 < args.duration <= 600 and 0 <= args.warmup <= 600 and 1 <= args.inflight <= 4096):
        p.error("--duration must be in (0, 600], --warmup in [0, 600], --inflight in [1, 4096]")
    if not 1 <= args.rounds <= 100:
        p.error("--rounds must be in [1, 100]")
    if args.profile and args.rounds != 1:
        p.error("--profile runs one case once: leave --rounds at 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:  # asyncio.run has already cancelled the run and stopped the children
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
