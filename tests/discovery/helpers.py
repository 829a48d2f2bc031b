"""Shared parts of the discovery and governance tests: etcd, server processes, several instances."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kitex_grpc
from tests.conftest import ROOT
from tests.gobuild import go_toolchain, make_go_target, unavailable
from tests.support import EchoService, serve

# `make etcd` builds the pinned etcd from the Go module proxy into .cache/bin (interop/etcd/go.mod).
ETCD_BUILT = ROOT / ".cache" / "bin" / "etcd"


def etcd_executable() -> str:
    """The pinned etcd of .cache/bin (built now if Go is here), else one on PATH; CI fails without both."""
    if not ETCD_BUILT.exists() and go_toolchain() is not None:
        make_go_target("etcd-build", "etcd (make etcd)")
    if ETCD_BUILT.exists():
        return str(ETCD_BUILT)
    exe = shutil.which("etcd")
    if exe is None:
        unavailable("the discovery tests need etcd: install Go (`make etcd` builds it) or put etcd on PATH")
    assert exe is not None
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_etcd(tmp: Path) -> Iterator[str]:
    """A real etcd on free loopback ports with its data in ``tmp``; yields ``host:port`` (client API)."""
    exe = etcd_executable()
    client_url = f"http://127.0.0.1:{free_port()}"
    peer_url = f"http://127.0.0.1:{free_port()}"
    log = (tmp / "etcd.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            "--name=test",
            f"--data-dir={tmp / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # bounded poll of etcd's health endpoint on the client API
            if proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {proc.returncode}; see {tmp / 'etcd.log'}")
            try:
                with urllib.request.urlopen(f"{client_url}/health", timeout=1) as resp:
                    if b'"health":"true"' in resp.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("etcd did not become healthy within 20 s")
            time.sleep(0.05)
        yield client_url.removeprefix("http://")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


class ServerProcess:
    """An Echo server in its own process (so a test can SIGKILL it); prints its address on start."""

    def __init__(self, proc: subprocess.Popen[bytes], address: str) -> None:
        self.proc = proc
        self.address = address

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


async def start_process(*args: str) -> ServerProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting a child is quick; its output is awaited below
        [sys.executable, str(Path(__file__).with_name("instance_proc.py")), *args],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), 30)
    if not line.startswith(b"ADDR "):
        proc.kill()
        raise RuntimeError(f"server process did not start: {line!r}")
    return ServerProcess(proc, line.split()[1].decode())


@contextlib.asynccontextmanager
async def processes(count: int, *args: str) -> AsyncIterator[list[ServerProcess]]:
    procs = await asyncio.gather(*(start_process(*args) for _ in range(count)))
    try:
        yield list(procs)
    finally:
        for p in procs:
            p.kill()


@contextlib.asynccontextmanager
async def instances(
    count: int, *opts: kitex_grpc.server.ServerOption
) -> AsyncIterator[list[tuple[kitex_grpc.Server, EchoService]]]:
    """``count`` in-process Echo servers on loopback ports."""
    async with contextlib.AsyncExitStack() as stack:
        started = [await stack.enter_async_context(serve(*opts)) for _ in range(count)]
        yield started
