"""Running ``kitex-grpc serve`` (or a workers script) as a real process tree, and watching it."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"^serving (\S+) transport=(\w+) pids=([\d,]+)(?: metrics=(\S+))?$")


class Proc:
    """A process whose merged stdout/stderr lines are read by a thread into a queue."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        self.pids: list[int] = []  # worker pids seen: killed by pid at cleanup if still alive

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """The first new line matching ``pattern``; fails at EOF or after ``timeout`` seconds."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {regex.pattern!r} in {timeout}s:\n" + self.output()
                ) from None
            if line is None:
                raise AssertionError(f"exited before a line matching {regex.pattern!r}:\n" + self.output())
            self.lines.append(line)
            m = regex.search(line)
            if m is not None:
                return m

    def ready(self, timeout: float = 30.0) -> tuple[str, list[int], str]:
        m = self.wait_for(READY, timeout)
        pids = [int(p) for p in m.group(3).split(",")]
        self.pids.extend(pids)
        return m.group(1), pids, m.group(4) or ""

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for the exit (reading the rest of the output); the exit code."""
        code = self.popen.wait(timeout)
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code

    def output(self) -> str:
        return "\n".join(self.lines)

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def cleanup(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._thread.join(10)  # EOF once every process holding the pipe has gone
        if self.popen.stdout is not None and not self._thread.is_alive():
            self.popen.stdout.close()


def serve(workers: int | None, env: dict[str, str], *extra: str) -> Proc:
    argv = [sys.executable, "-m", "kitex_grpc.cli", "serve", "tests.workers.app:make_server"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    return Proc([*argv, *extra], env)


@contextlib.contextmanager
def serving(workers: int | None, env: dict[str, str], *extra: str) -> Iterator[Proc]:
    proc = serve(workers, env, *extra)
    try:
        yield proc
    finally:
        proc.cleanup()


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait (bounded) for every pid to exit; the ones still running after ``timeout`` seconds.

    A pidfd becomes readable when its process exits, whether or not anybody reaps it."""
    deadline = time.monotonic() + timeout
    alive: list[int] = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                alive.append(pid)
        finally:
            os.close(fd)
    return alive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
