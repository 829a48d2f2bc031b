"""A whole server process's user-space instructions per call, through real sockets (valgrind).

``path_ttheader`` counts our own path without sockets; this counts everything a server process runs
for a call: its event loop or threads, the socket calls' user-space side, decoding, the handler,
encoding. It runs a bench server (``bench.servers``) under ``valgrind --tool=callgrind`` and drives
it with its bench client, twice, with ``--calls`` and ``5 x --calls`` calls; the difference of the
two totals over the extra calls is the figure. A busy machine does not move it, so it compares
servers that throughput on a shared VM cannot tell apart (kitex-server-sync against
thriftpy2-threaded: both are driven by the same thriftpy2 sync client, 64 threads).

    PYTHONPATH=. python -m bench.server_instructions kitex-server-sync thriftpy2-threaded \\
        [--calls 640] [--threads 64] [--payload 64] [--callgrind-out DIR]

Only the impls with a blocking client (``bench.adapter.BlockingClient``) are supported. Kernel time
is not counted: valgrind sees user space only. Under valgrind a server runs some 50x slower, so its
loop finds more requests ready per wake-up than at full speed; the counts suit comparing servers and
builds, not predicting time. Needs valgrind on PATH.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import proc, registry
from bench.adapter import BlockingClient, load

REPO = Path(__file__).resolve().parent.parent
LISTEN_TIMEOUT = 120.0  # seconds for a server under valgrind to print its address
CALL_TIMEOUT = 600.0  # seconds for one run's calls, whatever the machine
EXIT_TIMEOUT = 120.0  # seconds for valgrind to write its totals after SIGTERM
_COLLECTED = re.compile(rb"Collected : (\d+)")


def _connect(impl: registry.Impl, address: str) -> BlockingClient:
    client = proc.run(load(impl).connect(address))
    if not isinstance(client, BlockingClient):
        proc.run(client.close())
        raise SystemExit(f"{impl.name}: not a blocking-client impl (see --help)")
    return client


def _drive(client: BlockingClient, payload: int, threads: int, calls: int) -> None:
    """``calls`` calls (rounded down to a multiple of ``threads``), ``threads`` at a time."""
    request = client.request(b"x" * payload)
    callers = [client.connect_caller() for _ in range(threads)]
    per_thread = calls // threads
    failures: list[BaseException] = []

    def worker(call: Any) -> None:
        try:
            for _ in range(per_thread):
                call(request)
        except Exception as exc:  # reported below; the other threads finish their share
            failures.append(exc)

    workers = [threading.Thread(target=worker, args=(c,), daemon=True) for c in callers]
    for w in workers:
        w.start()
    deadline = time.monotonic() + CALL_TIMEOUT
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
        if w.is_alive():
            raise SystemExit(f"calls did not finish within {CALL_TIMEOUT:.0f}s")
    if failures:
        raise SystemExit(f"{len(failures)} caller(s) failed; first: {failures[0]!r}")


def count(impl: registry.Impl, calls: int, threads: int, payload: int, out_dir: Path) -> int:
    """Total instructions of one server process that served ``calls`` calls (start-up included)."""
    out_file = out_dir / f"callgrind.{impl.name}.{calls}"
    cmd = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
        sys.executable, "-m", "bench.servers", impl.name, "-",
    ]  # fmt: skip
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    server = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        line = _readline(server.stdout, LISTEN_TIMEOUT).decode().split()
        if len(line) != 2 or line[0] != proc.LISTENING:
            raise SystemExit(f"{impl.name}: server did not start: {' '.join(line) or 'no output'}")
        client = _connect(impl, line[1])
        try:
            _drive(client, payload, threads, calls)
        finally:
            proc.run(client.close())
        server.terminate()
        _, err = server.communicate(timeout=EXIT_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    found = _COLLECTED.search(err)
    if found is None:
        raise SystemExit(f"{impl.name}: valgrind reported no total (exit status {server.returncode})")
    return int(found.group(1))


def _readline(stream: Any, timeout: float) -> bytes:
    """One line of ``stream``, or SystemExit after ``timeout`` seconds."""
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        raise SystemExit(f"no line from the server within {timeout:.0f}s")
    return box[0]


def per_call(impl: registry.Impl, calls: int, threads: int, payload: int, out_dir: Path) -> float:
    small = calls // threads * threads
    large = 5 * small
    extra = count(impl, large, threads, payload, out_dir) - count(impl, small, threads, payload, out_dir)
    return extra / (large - small)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.server_instructions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("impls", nargs="+", choices=list(registry.BY_NAME), metavar="IMPL")
    p.add_argument("--calls", type=int, default=640, help="calls of the smaller run (the larger: 5x)")
    p.add_argument("--threads", type=int, default=64, help="caller threads, one connection each")
    p.add_argument("--payload", type=int, default=64, help="payload bytes per request")
    p.add_argument("--callgrind-out", default=None, help="keep the callgrind files in this directory")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH (apt-get install valgrind)")
    if args.calls < args.threads:
        raise SystemExit("--calls must be at least --threads")
    with tempfile.TemporaryDirectory(prefix="server-ir-") as tmp:
        out_dir = Path(args.callgrind_out or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        print(f"impl                  instructions/call  (payload {args.payload} B, {args.threads} threads, "
              f"{proc.compiled_summary()})")  # fmt: skip
        for name in args.impls:
            figure = per_call(registry.get(name), args.calls, args.threads, args.payload, out_dir)
            print(f"{name:<20}  {figure:17,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
