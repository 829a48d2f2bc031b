"""grpc-go's interop client and server (interop/grpc/, grpc-go v1.71.1): building and running them.

As with the Go Kitex binaries (kitex_peer.py): without Go the tests skip, except in CI (``CI=1``)
where a missing toolchain or a failed build fails them.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.gobuild import ROOT, make_go_target, ready_line

GRPC_BIN = ROOT / ".cache" / "interop-grpc" / "bin"

# The interop cases (grpc/grpc doc/interop-test-descriptions.md) the suite runs in both directions.
CASES = (
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "timeout_on_sleeping_server",
    "cancel_after_begin",
    "cancel_after_first_response",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_compressed_streaming",
    "server_compressed_streaming",
)


def build_grpc_binaries() -> Path:
    """``make grpc-interop-build`` once; in CI a failure fails, elsewhere it skips."""
    make_go_target("grpc-interop-build", "grpc-go's interop binaries")
    return GRPC_BIN


@contextmanager
def grpc_go_server(bin_dir: Path) -> Iterator[str]:
    """grpc-go's TestService on a free loopback port; yields its ``host:port``."""
    proc = subprocess.Popen(
        [str(bin_dir / "server"), "-addr", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        line = ready_line(proc, "READY addr=", "grpc-go interop server")
        yield line.split("=", 1)[1].strip()
    finally:
        proc.kill()
        proc.wait(10)


async def run_grpc_go_client(bin_dir: Path, address: str, case: str, limit_s: float = 60) -> tuple[int, str]:
    """Run one case with grpc-go's interop client; returns its exit status and its output."""
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "client"),
        "-addr",
        address,
        "-case",
        case,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")
