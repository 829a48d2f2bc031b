"""HTTP probes through a server's life, queried with a real HTTP client, and the Kubernetes example."""

from __future__ import annotations

import asyncio
import http.client
import re
from pathlib import Path
from typing import Any

import pytest

from examples.kubernetes import server as k8s
from kitex_grpc import client, server
from kitex_grpc.discovery.registry import Info
from kitex_grpc.health import HealthServer, ServingStatus
from kitex_grpc.health.http_probes import HTTPProbes
from kitex_grpc.transport_protocol import TransportProtocol
from tests.support import NOT_ABOUT_DIALING, EchoService, Req, serve

MANIFEST = Path(k8s.__file__).with_name("deployment.yaml")


def _get(address: str, path: str) -> tuple[int, str]:
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(
        "127.0.0.1" if host in ("0.0.0.0", "[::]") else host, int(port), timeout=5
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


async def get(address: str, path: str) -> tuple[int, str]:
    """``GET path`` with the standard library's HTTP client, in a thread (a real client, real socket)."""
    return await asyncio.wait_for(asyncio.to_thread(_get, address, path), 10)


def probes_of(svr: Any) -> HTTPProbes:
    return next(h for h in svr.options.hooks if isinstance(h, HTTPProbes))


async def until_status(address: str, path: str, status: int, seconds: float = 5.0) -> str:
    """Query ``path`` until it answers ``status`` (bounded); returns that answer's body."""
    async with asyncio.timeout(seconds):
        while True:
            code, body = await get(address, path)
            if code == status:
                return body


async def test_probes_through_a_drain_with_the_kubernetes_example() -> None:
    handler = EchoService()
    svr = k8s.build_server("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", handler=handler)
    await svr.start()
    probes = probes_of(svr)
    stopping: asyncio.Task[None] | None = None
    try:
        address = probes.address
        assert await get(address, "/healthz") == (200, "ok\n")
        assert await get(address, "/readyz") == (200, "ready\n")
        assert (await get(address, "/nope"))[0] == 404

        cli = k8s.echo_kitex.new_client(
            "echo",
            client.with_host_ports(svr.address),
            client.with_transport_protocol(TransportProtocol.GRPC_H2),
            NOT_ABOUT_DIALING,
        )
        async with cli:
            in_flight = asyncio.ensure_future(cli.Unary(Req(message="gate")))
            await asyncio.wait_for(handler.entered.wait(), 5)
            stopping = asyncio.create_task(svr.stop())
            # draining: not ready, still alive, and gRPC health says the same
            assert await until_status(address, "/readyz", 503) == "draining\n"
            assert await get(address, "/healthz") == (200, "ok\n")
            health = next(h for h in svr.options.hooks if type(h).__name__ == "HealthHook").health
            assert health.status("") is ServingStatus.NOT_SERVING
            assert not stopping.done()  # the call in flight holds the drain open
            handler.release.set()
            assert (await asyncio.wait_for(in_flight, 5)).message == "gate"  # finished, not lost
        await asyncio.wait_for(stopping, 15)
        assert probes.phase == "stopped"
        with pytest.raises(OSError):  # stopped: nothing listens any more
            await get(address, "/healthz")
    finally:
        handler.release.set()
        if stopping is None:
            await svr.stop()


class GatedRegistry:
    """A registry whose ``register`` waits until the test allows it."""

    def __init__(self) -> None:
        self.allow = asyncio.Event()
        self.registering = asyncio.Event()
        self.registered: list[str] = []

    async def register(self, info: Info) -> None:
        self.registering.set()
        await self.allow.wait()
        self.registered.append(info.service_name)

    async def deregister(self, info: Info) -> None:
        self.registered.remove(info.service_name)


async def test_readiness_waits_for_registration_and_follows_grpc_health() -> None:
    registry = GatedRegistry()
    health = HealthServer()
    svr = k8s.echo_kitex.new_server(
        EchoService(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_http_probes("127.0.0.1:0"),
        server.with_health(health),
        server.with_registry(registry),
    )
    starting = asyncio.create_task(svr.start())
    try:
        await asyncio.wait_for(registry.registering.wait(), 5)
        address = probes_of(svr).address
        assert await get(address, "/healthz") == (200, "ok\n")
        assert await get(address, "/readyz") == (503, "not registered\n")
        registry.allow.set()
        await asyncio.wait_for(starting, 5)
        assert await get(address, "/readyz") == (200, "ready\n")
        health.set_status("", ServingStatus.NOT_SERVING)  # the application says it cannot serve
        assert await get(address, "/readyz") == (503, "health NOT_SERVING\n")
        health.set_status("", ServingStatus.SERVING)
        assert await get(address, "/readyz") == (200, "ready\n")
    finally:
        registry.allow.set()
        await asyncio.wait_for(starting, 5)
        await svr.stop()


async def test_a_taken_probe_port_fails_start() -> None:
    async with serve(server.with_http_probes("127.0.0.1:0")) as (first, _):
        taken = probes_of(first).address
        svr = k8s.echo_kitex.new_server(
            EchoService(), server.with_service_addr("127.0.0.1:0"), server.with_http_probes(taken)
        )
        with pytest.raises(OSError):
            await svr.start()
    with pytest.raises(ValueError, match="host:port"):
        server.with_http_probes("8081")
    with pytest.raises(ValueError, match="more than once"):
        k8s.echo_kitex.new_server(EchoService(), server.with_http_probes(), server.with_http_probes())


async def test_a_failed_start_releases_the_probe_port() -> None:
    # The service port is taken: start() fails after the probes bound theirs, and must let it go.
    async with serve() as (first, _):
        svr = k8s.echo_kitex.new_server(
            EchoService(),
            server.with_service_addr(first.address),
            server.with_transport_protocol(TransportProtocol.GRPC_H2),
            server.with_http_probes("127.0.0.1:0"),
        )
        with pytest.raises(OSError):
            await svr.start()
        probe_address = probes_of(svr).address
        assert probe_address
        host, port = probe_address.rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)


def _manifest_value(pattern: str) -> list[str]:
    return re.findall(pattern, MANIFEST.read_text())


def test_the_manifest_matches_the_example_server() -> None:
    text = MANIFEST.read_text()
    probe_port = int(k8s.PROBE_ADDR.rpartition(":")[2])
    assert probe_port == 8081 and int(k8s.SERVICE_ADDR.rpartition(":")[2]) == 8888
    # each probe: the path and the probe port
    probes = re.findall(r"(\w+Probe):\s*\n\s*httpGet:\s*\n\s*path: (\S+)\s*\n\s*port: (\d+)", text)
    assert probes == [
        ("startupProbe", "/healthz", str(probe_port)),
        ("livenessProbe", "/healthz", str(probe_port)),
        ("readinessProbe", "/readyz", str(probe_port)),
    ]
    assert _manifest_value(r"containerPort: (\d+)") == ["8888", "8081", "9092"]
    assert _manifest_value(r'prometheus.io/port: "(\d+)"') == [k8s.METRICS_ADDR.rpartition(":")[2]]
    assert _manifest_value(r'command: \["sleep", "(\d+)"\]') == [str(k8s.PRE_STOP_SLEEP)]
    grace = int(_manifest_value(r"terminationGracePeriodSeconds: (\d+)")[0])
    assert grace == k8s.PRE_STOP_SLEEP + k8s.EXIT_WAIT_TIME + k8s.GRACE_MARGIN
    svr = k8s.build_server()
    assert svr.options.exit_wait_time == k8s.EXIT_WAIT_TIME
    for key in ("requests:", "limits:", "cpu:", "memory:"):
        assert key in text
