"""What the server and client processes share: CPU pinning, cProfile, and the stdout line protocol.

Line protocol (one line, then nothing else on stdout):

- server: ``LISTENING <host:port>`` once accepting, or ``UNAVAILABLE <reason>`` (exit status 3)
- client: ``RESULT <json>`` when done, or ``UNAVAILABLE <reason>`` (exit status 3)
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

LISTENING = "LISTENING"
UNAVAILABLE = "UNAVAILABLE"
RESULT = "RESULT"
EXIT_UNAVAILABLE = 3
# The event loop every benchmark process runs on, the same for kitex-grpc and its baselines:
# "asyncio" (the standard library's, the default) or "uvloop" (bench/run.py --loop sets it).
LOOP_ENV = "KITEX_BENCH_LOOP"
LOOPS = ("asyncio", "uvloop")


def compiled_summary() -> str:
    """How much of kitex_grpc runs compiled here (kitex_grpc/compiled.py): figures depend on it."""
    from kitex_grpc.compiled import COMPILED_MODULES, compiled_modules

    return f"compiled modules: {len(compiled_modules())} of {len(COMPILED_MODULES)}"


def loop_name() -> str:
    name = os.environ.get(LOOP_ENV, "asyncio")
    if name not in LOOPS:
        raise SystemExit(f"{LOOP_ENV}={name!r}: expected one of {', '.join(LOOPS)}")
    return name


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_name` names."""
    if loop_name() == "uvloop":
        try:
            import uvloop  # an optional dependency: pip install 'kitex-grpc[uvloop]'
        except ImportError:
            main.close()
            raise SystemExit(
                "--loop uvloop: uvloop is not installed (pip install 'kitex-grpc[uvloop]')"
            ) from None
        return uvloop.run(main)
    return asyncio.run(main)


def pin_cpu(cpu: int | None) -> None:
    """Run this process (and every thread it starts later) on one CPU, if the OS allows."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    if cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})


def emit(kind: str, text: str) -> None:
    sys.stdout.write(f"{kind} {text}\n")
    sys.stdout.flush()


@contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """cProfile the block and dump the stats to ``path`` (no-op without a path)."""
    if not path:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system, every thread) a process has used so far; None if unreadable.

    Linux ``/proc/<pid>/stat`` fields 14 and 15, in clock ticks (usually 10 ms).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()  # the name in parentheses may hold spaces
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
