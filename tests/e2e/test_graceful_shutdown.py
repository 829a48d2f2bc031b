"""Graceful shutdown: stop accepting, let in-flight calls finish within the exit wait time, then close."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import client, server
from kitex_grpc.errors import KitexError
from tests.support import EchoService, Req, connect, serve, wait_for

ROOT = Path(__file__).resolve().parents[2]


async def _refused(address: str, attempts: int = 200) -> bool:
    """True once a fresh client can no longer start calls on ``address`` (bounded attempts)."""
    for _ in range(attempts):
        cli = echo_kitex.new_client("echo", client.with_host_ports(address), client.with_connect_timeout(0.5))
        try:
            await cli.Unary(Req(message="probe"))
        except KitexError:
            return True
        finally:
            await cli.close()
    return False


async def test_stop_drains_in_flight_calls() -> None:
    svc = EchoService()
    async with serve(server.with_exit_wait_time(10), handler=svc) as (svr, _), connect(svr) as cli:
        in_flight = [asyncio.create_task(cli.Unary(Req(message="gate", seq=i))) for i in range(5)]
        await svc.arrived(5)
        stopping = asyncio.create_task(svr.stop())
        assert await _refused(svr.address), "server kept accepting new calls while draining"
        assert not stopping.done()
        svc.release.set()
        replies = await asyncio.wait_for(asyncio.gather(*in_flight), 10)
        await asyncio.wait_for(stopping, 10)
    assert sorted(r.seq for r in replies) == [0, 1, 2, 3, 4]
    assert svc.finished == 5


async def test_calls_past_the_exit_wait_time_are_cancelled() -> None:
    svc = EchoService()
    async with serve(server.with_exit_wait_time(0.2), handler=svc) as (svr, _), connect(svr) as cli:
        call = asyncio.create_task(cli.Unary(Req(message="block")))
        await wait_for(svc.entered)
        await asyncio.wait_for(svr.stop(), 5)
        await wait_for(svc.cancelled)
        with pytest.raises(KitexError):
            await asyncio.wait_for(call, 5)


async def test_sigterm_under_run_drains_then_exits() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "e2e" / "drain_server.py"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"LISTENING "), line
        address = line.split()[1].decode()
        cli = echo_kitex.new_client("echo", client.with_host_ports(address))
        call = asyncio.create_task(cli.Unary(Req(message="gate")))
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"ENTERED\n"
        proc.send_signal(signal.SIGTERM)
        assert await _refused(address), "server kept accepting new calls after SIGTERM"
        proc.stdin.write(b"release\n")
        await proc.stdin.drain()
        reply = await asyncio.wait_for(call, 10)
        assert reply.message == "gate"
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"STOPPED\n"
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        await cli.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
