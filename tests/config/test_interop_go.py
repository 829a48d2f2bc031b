"""Parity with Go: one etcd key, written once, changes a Go Kitex client (kitex-contrib/config-etcd
v0.2.0, interop/configetcd) and a kitex-grpc client alike; both measured by behaviour."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import client
from kitex_grpc.config.etcd import EtcdConfigSource
from kitex_grpc.discovery.etcd import EtcdClient
from kitex_grpc.errors import KitexError, RPCTimeoutError, ServiceCircuitBreakError
from kitex_grpc.governance import is_retry_request
from tests.config.helpers import FAILURE_RETRY_ONCE, until
from tests.gobuild import ROOT, go_toolchain, unavailable
from tests.support import NOT_ABOUT_DIALING, EchoService, Req, serve

MODULE = ROOT / "interop" / "configetcd"
BINARY = ROOT / ".cache" / "interop" / "bin" / "configclient"
CALLER = "caller"  # both clients call themselves this: they read the very same keys
KEY = f"/KitexConfig/{CALLER}/echo"


def configclient() -> str:
    """The Go client, built (once per change of its sources) with the interop module's Go caches."""
    sources = [MODULE / "main.go", MODULE / "go.mod", MODULE / "go.sum"]
    if BINARY.exists() and BINARY.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return str(BINARY)
    go = go_toolchain()
    if go is None:
        unavailable("Go is not installed: the config-etcd parity test needs it")
    assert go is not None
    cache = ROOT / ".cache" / "go"
    env = {
        **os.environ,
        "GOMODCACHE": str(cache / "mod"),
        "GOCACHE": str(cache / "build"),
        "GOFLAGS": "-modcacherw",
        "GOTOOLCHAIN": "local",
    }
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [go, "build", "-o", str(BINARY), "."],
        cwd=MODULE,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        unavailable(f"building interop/configetcd failed:\n{result.stderr}")
    return str(BINARY)


class Handler(EchoService):
    """``hang``: the first attempt hangs, a retried one answers. ``slow:<ms>``: answers after that."""

    async def Unary(self, request: Req) -> Any:
        msg = request.message
        if msg == "hang" and not is_retry_request():
            await asyncio.Event().wait()
        if msg.startswith("slow:"):
            await asyncio.sleep(int(msg[5:]) / 1000)
        return await super().Unary(request)


class GoClient:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(10):
            return await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)

    async def call(self, message: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(message + "\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(await self._line())
        return result


@asynccontextmanager
async def go_client(etcd: str, address: str) -> AsyncIterator[GoClient]:
    exe = configclient()
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting a child is quick; its output is awaited below
        [exe, "-etcd", etcd, "-addr", address, "-client", CALLER, "-service", "echo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    go = GoClient(proc)
    try:
        assert (await go._line()).strip() == "READY"
        yield go
    finally:
        proc.kill()
        proc.wait(10)


async def test_one_key_changes_a_go_client_and_a_python_client_alike(etcd: str) -> None:
    admin = EtcdClient([etcd])
    source = EtcdConfigSource([etcd])  # Go's defaults on, as the Go suite has them
    try:
        async with (
            serve(handler=Handler()) as (svr, _),
            go_client(etcd, svr.address) as go,
            echo_kitex.new_client(
                "echo",
                client.with_host_ports(svr.address),
                client.with_client_basic_info(CALLER),
                NOT_ABOUT_DIALING,
                client.with_config_source(source),
            ) as py,
        ):
            await py.client.config_ready()

            async def py_kind(message: str) -> str:
                try:
                    await py.Unary(Req(message=message))
                except RPCTimeoutError:
                    return "timeout"
                return ""

            async def both(message: str, kind: str) -> bool:
                return (await go.call(message))["kind"] == kind and await py_kind(message) == kind

            # no key: config-etcd's implicit 1 s RPC timeout, on both sides
            assert (await go.call("slow:400"))["ok"] and await py_kind("slow:400") == ""
            assert (await go.call("slow:1300"))["kind"] == "timeout" and await py_kind(
                "slow:1300"
            ) == "timeout"
            # a new rpc_timeout: the slow handler now times out for both
            await admin.put(f"{KEY}/rpc_timeout", json.dumps({"*": {"rpc_timeout_ms": 200}}))
            await until(lambda: both("slow:400", "timeout"))
            assert await both("hang", "timeout")  # no retry yet
            # retry on: the hang is answered by the retried attempt, for both
            await admin.put(f"{KEY}/retry", json.dumps({"Unary": FAILURE_RETRY_ONCE}))
            await until(lambda: both("hang", ""))
            # the key deleted: back to no retry
            await admin.delete(f"{KEY}/retry")
            await until(lambda: both("hang", "timeout"))
            # a circuit breaker: after the configured failures both refuse before calling
            breaker = {"Unary": {"enable": True, "err_rate": 0.5, "min_sample": 3}}
            await admin.put(f"{KEY}/circuit_break", json.dumps(breaker))

            async def go_opened() -> bool:
                return bool((await go.call("error:x"))["kind"] == "circuit_break")

            async def py_opened() -> bool:
                try:
                    await py.Unary(Req(message="error:x"))
                except ServiceCircuitBreakError:
                    return True
                except KitexError:
                    return False
                return False

            await until(go_opened)
            await until(py_opened)
            assert (await go.call("ok"))["kind"] == "circuit_break"
            with pytest.raises(ServiceCircuitBreakError):
                await py.Unary(Req(message="ok"))
    finally:
        await source.close()
        await admin.close()
