"""The Go Kitex Thrift streaming peers (interop/cmd/streamserver, streamclient; code generated without
-streamx, so streams go over gRPC with application/grpc+thrift)."""

from __future__ import annotations

import asyncio
import json
import selectors
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.gobuild import ready_line
from tests.interop.kitex_peer import GoServer


class GoStreamServer:
    """The Go StreamService server: its address, and the EVENT lines it prints (interop/README.md)."""

    def __init__(self, proc: subprocess.Popen[bytes], address: str) -> None:
        self.proc = proc
        self.address = address

    def wait_event(self, method: str, kind: str, seconds: float = 10.0) -> str:
        """The detail of the next ``EVENT <method> <kind> <detail>`` line (bounded by ``seconds``)."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                if not sel.select(timeout=seconds):
                    raise TimeoutError(f"no EVENT {method} {kind} within {seconds:g} s")
                line = self.proc.stdout.readline().decode()
                if not line:
                    raise RuntimeError("the Go stream server exited")
                parts = line.rstrip("\n").split(" ", 3)
                if parts[:3] == ["EVENT", method, kind]:
                    return parts[3] if len(parts) > 3 else ""


@contextmanager
def go_stream_server(bin_dir: Path) -> Iterator[GoStreamServer]:
    """Start the Go StreamService server on a free loopback port; stop it (SIGTERM) on exit."""
    proc = subprocess.Popen(
        [str(bin_dir / "streamserver"), "-addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        line = ready_line(proc, "READY ", "Go Kitex stream server")
        yield GoStreamServer(proc, line.split("addr=", 1)[1].strip())
    finally:
        if proc.poll() is None:
            GoServer(proc, "", "").stop()


async def run_stream_client(bin_dir: Path, address: str, *cases: str, seconds: float = 120) -> dict[str, Any]:
    """Run the Go stream client for ``cases``; its JSON line per case, by case name."""
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "streamclient"), "-addr", address, "-case", ",".join(cases),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(seconds):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    return {line["case"]: line for line in lines}
