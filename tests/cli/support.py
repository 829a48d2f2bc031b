"""Running the ``kitex-grpc`` command in a subprocess, and the test server process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.gobuild import ready_line

ROOT = Path(__file__).resolve().parents[2]
RICH_THRIFT = ROOT / "tests" / "generic" / "idl" / "rich.thrift"
ECHO_PROTO = ROOT / "protos" / "echo" / "v1" / "echo.proto"
ECHO_THRIFT = ROOT / "idl" / "echo.thrift"


def command() -> list[str]:
    """The installed console script when this interpreter has one, else ``python -m kitex_grpc.cli``."""
    script = Path(sys.executable).parent / "kitex-grpc"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "kitex_grpc.cli"]


def env() -> dict[str, str]:
    """The environment for the command: this tree on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw: bytes = b""


def run(*args: str, stdin: str = "", timeout: float = 30) -> Result:
    """Run ``kitex-grpc args...`` to completion (bounded); its exit code, stdout and stderr."""
    proc = subprocess.run(
        [*command(), *args],
        input=stdin.encode(),
        capture_output=True,
        timeout=timeout,
        env=env(),
        cwd=ROOT,
    )
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(), proc.stdout)


@dataclass
class Servers:
    pb: str
    thrift: str


@contextmanager
def running_servers(transport: str) -> Iterator[Servers]:
    """tests/cli/server_proc.py on free ports; it stops when its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "cli" / "server_proc.py"), transport],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env(),
        cwd=ROOT,
    )
    try:
        line = ready_line(proc, "READY ", "the test server")
        fields = dict(part.split("=", 1) for part in line.split()[1:])
        yield Servers(fields["pb"], fields["thrift"])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def best_of(times: int, *args: str) -> float:
    """The fastest of ``times`` runs of the command, in seconds of wall time."""
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        result = run(*args)
        assert result.code == 0, result.err
        best = min(best, time.perf_counter() - start)
    return best
