"""``kitex-grpc serve --workers N`` and ``with_workers``: real process trees on 127.0.0.1.

Every test waits on lines the processes print (the ready line, log lines) or on sockets, with
bounded timeouts, and kills by pid whatever is left at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client
from tests.workers.support import ROOT, Proc, free_port, serving, wait_gone

TRANSPORTS = ["ttheader", "grpc_h2", "grpc"]


def _client(addr: str, transport: str) -> Any:
    return echo_kitex.new_client(
        "echo",
        client.with_host_ports(addr),
        client.with_transport_protocol(transport),
        client.with_rpc_timeout(10.0),
        client.with_connect_timeout(2.0),
        # grpcio shares one connection between channels to one address unless told not to
        client.with_grpcio_channel_options([("grpc.use_local_subchannel_pool", 1)]),
    )


async def _pids_seen(addr: str, transport: str, clients: int = 24) -> set[str]:
    """Call once from each of ``clients`` fresh clients (fresh connections); the pids that answered."""
    seen: set[str] = set()
    for _ in range(clients):
        cli = _client(addr, transport)
        try:
            reply = await cli.Unary(echo_pb2.EchoRequest(message="hi"))
        finally:
            await cli.close()
        seen.add(reply.message.rpartition("pid=")[2])
    return seen


def _env(transport: str, **extra: str) -> dict[str, str]:
    return {"ECHO_ADDR": "127.0.0.1:0", "ECHO_TRANSPORT": transport, "ECHO_EXIT_WAIT": "5", **extra}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_two_workers_accept_on_one_address(transport: str) -> None:
    with serving(2, _env(transport)) as proc:
        addr, pids, _ = await asyncio.to_thread(proc.ready)
        assert len(pids) == 2
        seen = await _pids_seen(addr, transport)
        assert seen == {str(p) for p in pids}  # 24 connections: both workers answered
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.finish) == 0
        assert wait_gone(pids, 10) == []


@pytest.mark.parametrize("loop", ["auto", "asyncio"])  # uvloop, and asyncio's own loop
async def test_shared_ttheader_port_serves_http2_from_every_worker(loop: str) -> None:
    """The TTHeader port also takes HTTP/2 (gRPC) in every worker: one address, both protocols."""
    with serving(2, _env("ttheader"), "--loop", loop) as proc:
        addr, pids, _ = await asyncio.to_thread(proc.ready)
        assert await _pids_seen(addr, "grpc_h2") == {str(p) for p in pids}
        assert await _pids_seen(addr, "ttheader") == {str(p) for p in pids}


class _Starts:
    """UDP datagrams ``start <pid>`` from the test handler: which calls are in flight, where."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(20.0)
        self.port = self.sock.getsockname()[1]

    def wait(self, n: int) -> list[str]:
        return [self.sock.recv(64).decode().split()[1] for _ in range(n)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sigterm_drains_every_worker_without_losing_a_call(transport: str) -> None:
    starts = _Starts()
    with serving(2, _env(transport, WORKERS_TEST_NOTIFY=str(starts.port))) as proc:
        addr, pids, _ = await asyncio.to_thread(proc.ready)
        clients = [_client(addr, transport) for _ in range(16)]  # separate connections
        try:
            calls = [
                asyncio.ensure_future(c.Unary(echo_pb2.EchoRequest(message="sleep:1.5", seq=i)))
                for i, c in enumerate(clients)
            ]
            in_flight = await asyncio.to_thread(starts.wait, len(calls))
            assert set(in_flight) == {str(p) for p in pids}  # both workers have calls in flight
            proc.signal(signal.SIGTERM)
            replies = await asyncio.gather(*calls)
        finally:
            for c in clients:
                await c.close()
        assert sorted(r.seq for r in replies) == list(range(16))
        assert all(r.message.startswith("sleep:1.5 pid=") for r in replies)
        assert await asyncio.to_thread(proc.finish) == 0
        assert "draining 2 workers" in proc.output()
        assert wait_gone(pids, 10) == []


# Not GRPC (grpcio): grpcio's server cancels calls that reach it after its stop began, before the
# client has read its GOAWAY (README, "Workers", limits).
@pytest.mark.parametrize(
    ("transport", "loop"), [("ttheader", "auto"), ("ttheader", "asyncio"), ("grpc_h2", "auto")]
)
async def test_sighup_rolls_workers_without_a_failed_call(transport: str, loop: str) -> None:
    with serving(2, _env(transport, ECHO_EXIT_WAIT="2"), "--loop", loop) as proc:
        addr, pids, _ = await asyncio.to_thread(proc.ready)
        stop = asyncio.Event()
        results: list[str] = []
        failures: list[BaseException] = []
        after_roll = asyncio.Event()
        rolled_at = [0]

        async def loop(cli: Any) -> None:
            while not stop.is_set():
                try:
                    reply = await cli.Unary(echo_pb2.EchoRequest(message="roll"))
                    results.append(reply.message.rpartition("pid=")[2])
                    if rolled_at[0] and len(results) - rolled_at[0] >= 20:
                        after_roll.set()
                except Exception as exc:
                    failures.append(exc)

        clients = [_client(addr, transport) for _ in range(4)]
        callers = [asyncio.ensure_future(loop(c)) for c in clients]
        try:
            proc.signal(signal.SIGHUP)
            m = await asyncio.to_thread(proc.wait_for, r"roll done: pids ([\d ]+)", 60)
            new_pids = [int(p) for p in m.group(1).split()]
            proc.pids.extend(new_pids)
            rolled_at[0] = len(results)
            async with asyncio.timeout(30):
                await after_roll.wait()  # 20 more calls answered after the roll
        finally:
            stop.set()
            await asyncio.gather(*callers)
            for c in clients:
                await c.close()
        assert failures == []
        assert set(new_pids).isdisjoint(pids)
        assert wait_gone(pids, 10) == []  # the old workers have exited
        assert set(results[-20:]) <= {str(p) for p in new_pids}
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.finish) == 0


async def test_a_worker_that_dies_is_restarted_and_logged() -> None:
    with serving(2, _env("ttheader")) as proc:
        addr, pids, _ = await asyncio.to_thread(proc.ready)
        import os

        os.kill(pids[0], signal.SIGKILL)
        m = await asyncio.to_thread(proc.wait_for, r"worker 0 restarted: pid (\d+)")
        proc.pids.append(int(m.group(1)))
        assert f"worker 0 (pid {pids[0]}) exited unexpectedly (killed by SIGKILL)" in proc.output()
        seen = await _pids_seen(addr, "ttheader")
        assert seen == {m.group(1), str(pids[1])}
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.finish) == 0


async def test_merged_metrics_one_page_for_all_workers_and_kept_across_a_roll() -> None:
    from kitex_grpc.server.metrics_hub import scrape

    with serving(2, _env("ttheader", ECHO_METRICS="127.0.0.1:0", ECHO_EXIT_WAIT="1")) as proc:
        addr, _, metrics = await asyncio.to_thread(proc.ready)
        seen = await _pids_seen(addr, "ttheader", clients=30)
        assert len(seen) == 2
        page = await scrape(metrics)
        calls = [line for line in page.splitlines() if line.startswith("kitex_server_calls_total{")]
        assert len(calls) == 1 and calls[0].endswith(" 30"), page
        assert "kitex_grpc_workers 2" in page
        assert page.count("# TYPE kitex_server_calls_total counter") == 1
        proc.signal(signal.SIGHUP)  # the old workers' counts stay in the page after they exit
        m = await asyncio.to_thread(proc.wait_for, r"roll done: pids ([\d ]+)", 60)
        proc.pids.extend(int(p) for p in m.group(1).split())
        page = await scrape(metrics)
        calls = [line for line in page.splitlines() if line.startswith("kitex_server_calls_total{")]
        assert len(calls) == 1 and calls[0].endswith(" 30"), page
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.finish) == 0


async def _http_get(address: str, path: str) -> tuple[int, bytes]:
    host, port = address.rsplit(":", 1)
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_kitex_series_and_http_probes_are_served_once_for_all_workers() -> None:
    # N workers cannot bind one probe port or one metrics port: the supervisor serves both, the
    # metrics merged from the workers' private pages, readiness for the whole server.
    from kitex_grpc.server.metrics_hub import scrape

    probes = f"127.0.0.1:{free_port()}"
    env = _env("grpc_h2", WORKERS_TEST_KITEX_PROM="127.0.0.1:0", WORKERS_TEST_PROBES=probes)
    with serving(2, env) as proc:
        addr, _, metrics = await asyncio.to_thread(proc.ready)
        assert len(await _pids_seen(addr, "grpc_h2", clients=30)) == 2
        page = await scrape(metrics)
        calls = [line for line in page.splitlines() if line.startswith("kitex_server_throughput{")]
        assert len(calls) == 1 and calls[0].endswith(" 30"), page
        assert 'status="succeed"' in calls[0]
        assert await _http_get(probes, "/readyz") == (200, b"ready\n")
        assert await _http_get(probes, "/healthz") == (200, b"ok\n")
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.finish) == 0


async def test_registry_registration_happens_once_in_the_parent(tmp_path: Any) -> None:
    log = tmp_path / "registry.log"
    with serving(2, _env("grpc_h2", WORKERS_TEST_REGISTRY=str(log))) as proc:
        addr, _, _ = await asyncio.to_thread(proc.ready)
        await _pids_seen(addr, "grpc_h2", clients=4)
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.finish) == 0
    parent = proc.popen.pid
    assert log.read_text().splitlines() == [f"register {addr} {parent}", f"deregister {addr} {parent}"]


@pytest.mark.parametrize("transport", ["ttheader", "grpc_h2"])
async def test_shared_listening_socket_serves_and_rolls(transport: str) -> None:
    """reuse_port=False (the plan where SO_REUSEPORT does not balance): one socket for all workers."""
    with serving(2, _env(transport, WORKERS_TEST_SHARED="1", ECHO_EXIT_WAIT="2")) as proc:
        addr, pids, _ = await asyncio.to_thread(proc.ready)
        assert await _pids_seen(addr, transport, clients=4) <= {str(p) for p in pids}
        failures: list[BaseException] = []
        stop = asyncio.Event()

        async def loop() -> None:
            cli = _client(addr, transport)
            try:
                while not stop.is_set():
                    try:
                        await cli.Unary(echo_pb2.EchoRequest(message="roll"))
                    except Exception as exc:
                        failures.append(exc)
            finally:
                await cli.close()

        callers = [asyncio.ensure_future(loop()) for _ in range(3)]
        try:
            proc.signal(signal.SIGHUP)
            m = await asyncio.to_thread(proc.wait_for, r"roll done: pids ([\d ]+)", 60)
            proc.pids.extend(int(p) for p in m.group(1).split())
        finally:
            stop.set()
            await asyncio.gather(*callers)
        assert failures == []
        assert wait_gone(pids, 10) == []


async def test_divide_limits_gives_each_worker_its_share() -> None:
    """--divide-limits: a total concurrency of 2 over 2 workers is 1 per worker, so of 6 slow calls at
    once at most 2 are served (one per worker); per-worker limits of 2 would serve up to 4."""
    with serving(2, _env("ttheader", WORKERS_TEST_CONCURRENCY="2"), "--divide-limits") as proc:
        addr, _, _ = await asyncio.to_thread(proc.ready)
        clients = [_client(addr, "ttheader") for _ in range(6)]
        try:
            results = await asyncio.gather(
                *(c.Unary(echo_pb2.EchoRequest(message="sleep:1")) for c in clients), return_exceptions=True
            )
        finally:
            for c in clients:
                await c.close()
        served = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert 1 <= len(served) <= 2
        assert all("over limit" in str(r).lower() or "limit" in str(r).lower() for r in refused), refused


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["0", "-3"])
async def test_worker_count_below_one_is_refused(count: str) -> None:
    with serving(None, _env("ttheader"), "--workers", count) as proc:
        assert await asyncio.to_thread(proc.finish) == 2
        assert f"--workers: expected a worker count >= 1, got {count}" in proc.output()


async def test_port_already_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for transport in TRANSPORTS:
            with serving(2, _env(transport, ECHO_ADDR=f"127.0.0.1:{port}")) as proc:
                assert await asyncio.to_thread(proc.finish) == 1
                assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in proc.output()
                assert "worker" not in proc.output().split("already in use")[0].lower()


async def test_port_taken_by_another_reuseport_server_is_refused_too() -> None:
    """A second supervisor on the first one's port fails, though both would set SO_REUSEPORT."""
    with serving(1, _env("grpc_h2")) as first:
        addr, _, _ = await asyncio.to_thread(first.ready)
        with serving(1, _env("grpc_h2", ECHO_ADDR=addr)) as second:
            assert await asyncio.to_thread(second.finish) == 1
            assert "the port is already in use" in second.output()


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("192.0.2.1:0", "Cannot assign requested address"),  # TEST-NET-1: not this machine's
        ("no-such-host.invalid:0", "cannot listen on 'no-such-host.invalid:0'"),
    ],
)
async def test_unusable_address(address: str, message: str) -> None:
    with serving(2, _env("ttheader", ECHO_ADDR=address)) as proc:
        assert await asyncio.to_thread(proc.finish) == 1
        assert message in proc.output()


async def test_factory_that_raises() -> None:
    with serving(2, _env("ttheader", WORKERS_TEST_RAISE="factory")) as proc:
        assert await asyncio.to_thread(proc.finish) == 1
        out = proc.output()
        assert "the factory tests.workers.app:make_server raised RuntimeError: the test factory fails" in out


async def test_factory_that_raises_in_a_worker_stops_the_others() -> None:
    with serving(2, _env("ttheader", WORKERS_TEST_RAISE="worker")) as proc:
        assert await asyncio.to_thread(proc.finish) == 1
        out = proc.output()
        assert "failed to start: it exited (exit code 1) before it was ready" in out
        pids = [int(p) for p in _spawned(out)]
        assert wait_gone(pids, 10) == []


def _spawned(out: str) -> list[str]:
    import re

    return re.findall(r"\[(\d+)\]", out)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_no_worker_outlives_the_parent(sig: int) -> None:
    """Even a parent killed with SIGKILL leaves no worker behind (PR_SET_PDEATHSIG, the IPC's EOF)."""
    with serving(2, _env("grpc_h2", ECHO_EXIT_WAIT="1")) as proc:
        _, pids, _ = await asyncio.to_thread(proc.ready)
        proc.signal(sig)
        await asyncio.to_thread(proc.finish)
        assert wait_gone(pids, 10) == []


async def test_python_run_with_workers() -> None:
    """``server.with_workers(2)`` under ``run()``: the example script supervises copies of itself."""
    script = str(ROOT / "examples" / "workers" / "server.py")
    proc = Proc([sys.executable, script, "--addr", "127.0.0.1:0", "--workers", "2", "--transport", "grpc_h2"])
    try:
        m = await asyncio.to_thread(
            proc.wait_for, r"serving (\S+) \(GRPC_H2\) with 2 workers: pids (\d+) (\d+)"
        )
        proc.pids.extend([int(m.group(2)), int(m.group(3))])
        assert await _pids_seen(m.group(1), "grpc_h2") == {m.group(2), m.group(3)}
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.finish) == 0
        assert wait_gone(proc.pids, 10) == []
    finally:
        with contextlib.suppress(Exception):
            proc.cleanup()


async def test_worker_count_defaults_to_the_usable_cores() -> None:
    import os

    with serving(None, _env("grpc_h2", ECHO_EXIT_WAIT="1")) as proc:
        _, pids, _ = await asyncio.to_thread(proc.ready)
        assert len(pids) == len(os.sched_getaffinity(0))
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.finish) == 0
