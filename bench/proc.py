"""What the server and client processes share: CPU pinning, cProfile, and the stdout line protocol.

Line protocol (one line, then nothing else on stdout):

- server: ``LISTENING <host:port>`` once accepting, or ``UNAVAILABLE <reason>`` (exit status 3)
- client: ``RESULT <json>`` when done, or ``UNAVAILABLE <reason>`` (exit status 3)
"""

from __future__ import annotations

import cProfile
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LISTENING = "LISTENING"
UNAVAILABLE = "UNAVAILABLE"
RESULT = "RESULT"
EXIT_UNAVAILABLE = 3


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
