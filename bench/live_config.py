"""Live config figures (issue 28): ``python -m bench.live_config latency|cost [options]``.

``latency``: a real etcd (the pinned one of ``.cache/bin``, as the tests use) and an Echo server in a
child process; one client with ``EtcdConfigSource``. ``--changes`` times (default 100) the client's
``degradation`` key is written, alternately rejecting every call (``percentage`` 100) and none, while
the client calls back to back; for each write it records the time from just before the Put to the
start and to the end of the first call that obeys it. Prints p50/p99/max in milliseconds.

``cost``: the client-side price of live config per unary call. The same server, three clients
measured in alternating one-second slices (``--rounds``, default 5), 16 calls in flight each:
``static`` (``with_rpc_timeout(1)``), ``live-timeouts`` (no timeout option; ``client.live.set_timeouts``
puts 1 s in the per-method table the client looks up per call) and ``source`` (a ``DictSource`` with
an ``rpc_timeout`` key: the table plus the retry, circuit-breaker and degradation slots in the
chain). Prints calls/s and client CPU microseconds per call (median over rounds) for each, and the
nanoseconds of the look-up itself (``timeit``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


async def _serve_forever() -> None:
    from tests.support import serve

    async with serve() as (svr, _):
        print(f"ADDR {svr.address}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.live_config", "serve", cwd=REPO,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        if not line or line[0] != "ADDR":
            raise RuntimeError(f"server did not start: {line}")
        yield line[1]
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latency(changes: int) -> dict[str, Any]:
    from gen.echo.v1 import echo_kitex, echo_pb2
    from kitex_grpc import client
    from kitex_grpc.config.etcd import EtcdConfigSource
    from kitex_grpc.discovery.etcd import EtcdClient
    from kitex_grpc.errors import ACLError
    from tests.discovery.helpers import run_etcd  # first: it sets up the build under test

    key = "/KitexConfig/bench/echo/degradation"
    with tempfile.TemporaryDirectory() as tmp, run_etcd(Path(tmp)) as etcd:
        admin = EtcdClient([etcd])
        source = EtcdConfigSource([etcd], go_defaults=False)
        async with _server() as address:
            cli = echo_kitex.new_client(
                "echo",
                client.with_host_ports(address),
                client.with_client_basic_info("bench"),
                client.with_connect_timeout(5),
                client.with_config_source(source),
            )
            async with cli:
                await cli.client.config_ready()
                req = echo_pb2.EchoRequest(message="x")
                to_start: list[float] = []
                to_end: list[float] = []
                for i in range(changes):
                    reject = i % 2 == 0
                    value = json.dumps({"enable": reject, "percentage": 100 if reject else 0})
                    t0 = time.perf_counter()
                    await admin.put(key, value)
                    for _ in range(100_000):  # bounded: about 10 s of calls
                        started = time.perf_counter()
                        try:
                            await cli.Unary(req)
                            obeyed = not reject
                        except ACLError:
                            obeyed = reject
                        if obeyed:
                            to_start.append((started - t0) * 1000)
                            to_end.append((time.perf_counter() - t0) * 1000)
                            break
                    else:
                        raise RuntimeError(f"change {i} was never obeyed")
        await source.close()
        await admin.close()
    return {
        "changes": changes,
        "write_to_obeying_call_start_ms": {
            "p50": _pct(to_start, 0.5), "p99": _pct(to_start, 0.99), "max": max(to_start),
        },
        "write_to_obeying_call_end_ms": {
            "p50": _pct(to_end, 0.5), "p99": _pct(to_end, 0.99), "max": max(to_end),
        },
    }  # fmt: skip


async def _slice(cli: Any, seconds: float, inflight: int) -> tuple[int, float]:
    from gen.echo.v1 import echo_pb2

    req = echo_pb2.EchoRequest(message="x")
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await cli.Unary(req)
            done += 1

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return done, time.process_time() - cpu


async def cost(rounds: int, seconds: float, inflight: int) -> dict[str, Any]:
    from gen.echo.v1 import echo_kitex
    from kitex_grpc import client
    from kitex_grpc.config import DictSource
    from kitex_grpc.governance.timeouts import Timeouts

    async with _server() as address:
        base = (client.with_host_ports(address), client.with_connect_timeout(5))
        clients = {
            "static": echo_kitex.new_client("echo", *base, client.with_rpc_timeout(1)),
            "live-timeouts": echo_kitex.new_client("echo", *base),
            "source": echo_kitex.new_client(
                "echo",
                *base,
                client.with_config_source(DictSource({"rpc_timeout": {"*": {"rpc_timeout_ms": 1000}}})),
            ),
        }
        clients["live-timeouts"].client.live.set_timeouts("*", Timeouts(1.0))
        await clients["source"].client.config_ready()
        for cli in clients.values():  # warm-up: connect and fill caches
            await _slice(cli, 0.5, inflight)
        rates: dict[str, list[float]] = {name: [] for name in clients}
        cpu_us: dict[str, list[float]] = {name: [] for name in clients}
        names = list(clients)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                done, cpu = await _slice(clients[name], seconds, inflight)
                rates[name].append(done / seconds)
                cpu_us[name].append(cpu / done * 1e6)
        micro = _lookup_ns(clients["static"].client, clients["live-timeouts"].client)
        for cli in clients.values():
            await cli.close()
    result: dict[str, Any] = {"lookup_ns_per_call": micro}
    for name in clients:
        result[name] = {
            "calls_per_s_median": round(statistics.median(rates[name])),
            "client_cpu_us_per_call_median": round(statistics.median(cpu_us[name]), 2),
            "client_cpu_us_per_call_rounds": [round(v, 2) for v in cpu_us[name]],
        }
    return result


def _lookup_ns(static: Any, live: Any, number: int = 1_000_000) -> dict[str, float]:
    """Nanoseconds of what ``Client.call`` does to find the call's config: the static attribute read
    it did before, and the per-method table look-up it does now (a hit and a miss)."""
    import timeit

    def ns(stmt: str, cli: Any, method: str) -> float:
        env = {"self": cli, "method": method}
        return min(timeit.repeat(stmt, globals=env, number=number, repeat=5)) / number * 1e9

    lookup = "self._unary_configs.get(method, self._unary_config)"
    return {
        "attribute_read": round(ns("self._unary_config", static, "Unary"), 1),
        "table_lookup_empty": round(ns(lookup, static, "Unary"), 1),
        "table_lookup_hit": round(ns(lookup, live, "Unary"), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("latency", "cost", "serve"))
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--inflight", type=int, default=16)
    args = parser.parse_args()
    if args.what == "serve":
        asyncio.run(_serve_forever())
        return 0
    if args.what == "latency":
        result = asyncio.run(latency(args.changes))
    else:
        result = asyncio.run(cost(args.rounds, args.seconds, args.inflight))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
