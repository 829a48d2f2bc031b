"""How many times a large message is copied in user space: ``python -m bench.copies [options]``.

Each implementation's server and client run as their own processes with ``bench/memcount.c``
preloaded (built once into ``.cache/`` with ``cc``), which counts every memcpy and memmove of at
least 4 KiB that goes through libc. After a warm-up, both counters are zeroed, the client makes
``--calls`` calls one at a time, and both counts are read. Two scenarios:

- ``unary``: a call sends a message of ``--size`` bytes and gets one back. The server's count is
  its receive path plus its send path; the client's the same the other way.
- ``server-stream``: one call whose server sends ``--calls`` messages of ``--size`` bytes. The
  server's count is its send path alone, the client's its receive path alone.

Reported per message: bytes copied over the message's size ("copies"), and the number of
copy calls of 4 KiB or more. Not counted: the kernel's copies to and from the socket, copies the
compiler inlined, and realloc's own moves (see memcount.c). The figures are exact for a given build;
they do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import adapter, proc, registry, stubs
from bench.large import read_server_stream
from bench.run import _child_env, _stop, server_process

REPO = Path(__file__).resolve().parent.parent
SHIM_SOURCE = REPO / "bench" / "memcount.c"
SHIM = REPO / ".cache" / "memcount.so"
MiB = 1 << 20
UNARY, STREAM = "unary", "server-stream"
IMPLS = ("kitex-h2", "grpc-aio", "grpclib", "kitex-ttheader", "raw-socket")
STREAMING = {"kitex-h2", "grpc-aio", "grpclib", "raw-socket", "kitex-grpc"}
WARMUP_CALLS = 3


def build_shim() -> Path:
    """Compile memcount.c into .cache/memcount.so unless it is up to date."""
    if not SHIM.exists() or SHIM.stat().st_mtime < SHIM_SOURCE.stat().st_mtime:
        SHIM.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["cc", "-O2", "-shared", "-fPIC", "-o", str(SHIM), str(SHIM_SOURCE), "-ldl"], check=True
        )
    return SHIM


# -- the client process ----------------------------------------------------------------------------------


async def _unary(client: Any, size: int, calls: int) -> None:
    request = client.request(b"u" * size)
    for _ in range(calls):
        reply = await client.unary(request)
        if len(reply.payload) != size:
            raise ValueError(f"a {len(reply.payload)}-byte reply to a {size}-byte request")


async def _stream(client: Any, size: int, calls: int) -> None:
    await read_server_stream(client, size, calls)


async def client_main(args: argparse.Namespace) -> None:
    client = await adapter.load(registry.get(args.impl)).connect(args.address)
    drive = _unary if args.scenario == UNARY else _stream
    try:
        await drive(client, args.size, WARMUP_CALLS)
        # Both processes are idle here: each handles its signal before the next call's first byte.
        os.kill(args.server_pid, signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR2)
        await drive(client, args.size, args.calls)
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(args.server_pid, signal.SIGUSR1)
    finally:
        await client.close()


# -- the runner ------------------------------------------------------------------------------------------


def _read_counts(path: str) -> dict[int, tuple[int, int]]:
    """pid -> (copy calls, bytes copied), from the lines memcount.c appended."""
    counts: dict[int, tuple[int, int]] = {}
    for line in Path(path).read_text().splitlines():
        pid, calls, copied = (int(field) for field in line.split())
        counts[pid] = (calls, copied)
    return counts


async def count(impl: str, scenario: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(prefix="memcount-", suffix=".txt") as out:
        env = {**env, "LD_PRELOAD": str(SHIM), "MEMCOUNT_OUT": out.name}
        async with server_process(registry.get(impl), env, None, None) as (address, pid):
            cmd = [
                sys.executable, "-m", "bench.copies", "--client", impl, address, "--scenario", scenario,
                "--size", str(args.size), "--calls", str(args.calls), "--server-pid", str(pid),
            ]  # fmt: skip
            p = await asyncio.create_subprocess_exec(
                *cmd, cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL
            )
            try:
                if await asyncio.wait_for(p.wait(), 300) != 0:
                    raise RuntimeError(f"{impl} {scenario}: the client exited {p.returncode}")
            finally:
                await _stop(p)
        # The server has exited: SIGUSR1 (sent before the client exited) was handled before SIGTERM.
        counts = _read_counts(out.name)
    if len(counts) != 2 or pid not in counts:
        raise RuntimeError(f"{impl} {scenario}: expected the counts of two processes, read {counts}")
    server_calls, server_bytes = counts.pop(pid)
    ((client_calls, client_bytes),) = counts.values()
    messages = args.calls * args.size
    return {
        "impl": impl,
        "scenario": scenario,
        "server_copies": server_bytes / messages,
        "server_calls": server_calls / args.calls,
        "client_copies": client_bytes / messages,
        "client_calls": client_calls / args.calls,
    }


async def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    build_shim()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-stubs-") as tmp:
        stub_dir = Path(tmp)
        stubs.generate(stub_dir)
        env = _child_env(stub_dir, proc.loop_name())
        env[adapter.MAX_MESSAGE_ENV] = str(2 * args.size + MiB)
        for scenario in args.scenarios:
            for impl in args.impls:
                if scenario == STREAM and impl not in STREAMING:
                    continue
                rows.append(await count(impl, scenario, args, env))
    return rows


def table(rows: list[dict[str, Any]], size: int) -> str:
    out = [
        f"copies per {size}-byte message (bytes copied / message bytes; copy calls >= 4 KiB per call)",
        "| scenario | impl | server copies | server calls | client copies | client calls |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['scenario']} | {r['impl']} | {r['server_copies']:.2f} | {r['server_calls']:.1f} "
            f"| {r['client_copies']:.2f} | {r['client_calls']:.1f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.copies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=sorted(registry.BY_NAME))
    p.add_argument("--scenarios", nargs="+", default=[UNARY, STREAM], choices=(UNARY, STREAM))
    p.add_argument("--size", type=int, default=MiB, help="message size in bytes (default 1 MiB)")
    p.add_argument("--calls", type=int, default=20, help="calls (unary) or messages (stream) counted")
    p.add_argument("--client", nargs=2, metavar=("IMPL", "ADDRESS"), help=argparse.SUPPRESS)
    p.add_argument("--scenario", choices=(UNARY, STREAM), help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client is None:
        print(table(asyncio.run(run_all(args)), args.size))
        return 0
    args.impl, args.address = args.client
    proc.run(client_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
