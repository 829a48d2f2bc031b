"""The peers of the tests in other processes: building the Go ones with make, once (in CI a failure
fails the test; elsewhere it skips), and reading the line a peer prints once it serves.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def go_toolchain() -> str | None:
    """The ``go`` command on PATH, or the one at Go's usual install place."""
    return shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)


def unavailable(message: str) -> None:
    """Fail under CI, where every peer must be there; skip with ``message`` elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def make_go_target(target: str, what: str) -> None:
    """Run ``make -s target`` (a Go build into .cache/), which does nothing when the build is up to date."""
    go = go_toolchain()
    if go is None:
        unavailable(f"Go is not installed: install Go >= 1.21 to build {what}")
        return
    result = subprocess.run(
        ["make", "-s", target, f"INTEROP_GO={go}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        unavailable(f"building {what} failed:\n{result.stdout}\n{result.stderr}")


def ready_line(proc: subprocess.Popen[bytes], prefix: str, what: str, seconds: float = 30) -> str:
    """The first line ``proc`` prints, which must start with ``prefix`` (bounded by ``seconds``)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=seconds):
            raise RuntimeError(f"{what} did not become ready within {seconds:g} s")
    line = proc.stdout.readline().decode()
    assert line.startswith(prefix), line
    return line
