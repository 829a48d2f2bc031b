"""Running the Go Kitex binaries built from interop/, and a Python handler with their conventions."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import metainfo, rpcinfo
from kitex_grpc.errors import BizStatusError
from tests.gobuild import make_go_target, ready_line

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".cache" / "interop" / "bin"


def build_binaries() -> Path:
    """Build the Go binaries once (make interop-build). In CI a failure fails; elsewhere it skips."""
    make_go_target("interop-build", "the Go Kitex interop binaries")
    return BIN


class GoServer:
    """The Go server binary: its pb (gRPC + Kitex Protobuf) and Thrift addresses.

    ``stop()`` sends SIGTERM (Kitex deregisters and drains) and returns the exit status. ``fields``:
    every ``key=value`` of its READY line (``prom`` with ``-prom-addr``).
    """

    def __init__(self, proc: subprocess.Popen[bytes], pb: str, thrift: str) -> None:
        self.proc = proc
        self.pb = pb
        self.thrift = thrift
        self.fields: dict[str, str] = {}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@contextmanager
def go_server(bin_dir: Path, *args: str) -> Iterator[GoServer]:
    """Start the Go server on free loopback ports (extra flags in ``args``); stop it on exit."""
    proc = subprocess.Popen(
        [str(bin_dir / "server"), "-pb-addr", "127.0.0.1:0", "-thrift-addr", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        line = ready_line(proc, "READY ", "Go Kitex server")
        fields = dict(part.split("=", 1) for part in line.split()[1:])
        server = GoServer(proc, fields["pb"], fields["thrift"])
        server.fields = fields
        yield server
    finally:
        if proc.poll() is None:
            GoServer(proc, "", "").stop()


async def run_go_client_args(
    bin_dir: Path, *args: str, limit_s: float = 120
) -> tuple[int | None, dict[str, dict[str, Any]]]:
    """Run the Go Kitex client with ``args``; returns its exit status and its JSON lines by case."""
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "client"), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert lines, f"Go client printed nothing (exit {proc.returncode}): {err.decode()[-2000:]}"
    return proc.returncode, {line["case"]: line for line in lines}


async def run_go_client(
    bin_dir: Path, address: str, transport: str, case: str = "all"
) -> dict[str, dict[str, Any]]:
    """Run the Go Kitex client against ``address``; returns its JSON lines by case name."""
    _, results = await run_go_client_args(bin_dir, "-addr", address, "-transport", transport, "-case", case)
    return results


class KitexConventionEcho(echo_kitex.EchoHandler):
    """The Go server's handler conventions (interop/README.md), in Python, for the Go client's cases."""

    async def _behave(self, req: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        msg = req.message
        if msg.startswith("sleep:"):
            await asyncio.sleep(int(msg[len("sleep:") :]) / 1000)  # the handler's simulated work
        elif msg.startswith("biz:"):
            _, code, text = msg.split(":", 2)
            raise BizStatusError(int(code), text, {"k": "v"})
        elif msg.startswith("error:"):
            raise RuntimeError(msg[len("error:") :])
        elif msg == "meta":
            ri = rpcinfo.current()
            remaining = ri.time_remaining() if ri is not None else None
            metainfo.send_backward_value("backward-key", "backward-value")
            info = {
                "deadline_ms": -1 if remaining is None else int(remaining * 1000),
                "persistent": metainfo.get_all_persistent_values(),
                "transient": metainfo.get_all_values(),
            }
            return echo_pb2.EchoReply(message=json.dumps(info))
        return echo_pb2.EchoReply(message=msg, payload=req.payload, seq=req.seq)

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        return await self._behave(request)

    async def ServerStream(self, request: echo_pb2.EchoRequest) -> AsyncIterator[echo_pb2.EchoReply]:
        count = request.seq if request.seq > 0 else 3
        for i in range(count):
            if i == 1 and request.message.startswith(("biz:", "error:")):
                await self._behave(request)
            yield echo_pb2.EchoReply(message=request.message, payload=request.payload, seq=i)

    async def ClientStream(self, requests: AsyncIterator[echo_pb2.EchoRequest]) -> echo_pb2.EchoReply:
        got = [r.message async for r in requests]
        return echo_pb2.EchoReply(message=",".join(got), seq=len(got))

    async def Bidi(self, requests: AsyncIterator[echo_pb2.EchoRequest]) -> AsyncIterator[echo_pb2.EchoReply]:
        async for r in requests:
            yield echo_pb2.EchoReply(message=r.message, payload=r.payload, seq=r.seq)


def elapsed_ms(start: float) -> float:
    return (time.monotonic() - start) * 1000
