"""Generic clients against the typed client, on the same server, in one run (issue 26).

::

    PYTHONPATH=. python -m bench.generic                      # TTHEADER and GRPC_H2, 5 rounds x 2 s
    PYTHONPATH=. python -m bench.generic --transports ttheader --rounds 3 --slice 1
    PYTHONPATH=. python -m bench.generic --cpu 3000        # client CPU per call, one call at a time

A server process (this module with ``--serve``, pinned to the first allowed CPU) serves the Thrift
Echo (``idl/echo.thrift``) over TTHeader, or the protobuf Echo over GRPC_H2. The client process (pinned
to the second CPU) runs three clients of it: typed (thriftpy2 structs / generated protobuf messages),
JSON generic, and binary generic (request bytes built once), each with 64 calls in flight on one
client, in alternating slices (typed, json, binary, then json, binary, typed, ...) so that drift
of the machine hits all three alike. It prints calls/s per client (median of the rounds) and the
ratios to the typed client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INFLIGHT = 64
MESSAGE = "x" * 64


def _pin(index: int) -> None:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) > index:
        os.sched_setaffinity(0, {cpus[index]})


async def _serve(transport: str) -> None:
    import kitex_grpc
    from kitex_grpc import server, thrift

    _pin(0)
    if transport == "ttheader":
        echo = thrift.load(ROOT / "idl" / "echo.thrift")

        class ThriftEcho:
            async def echo(self, req: Any) -> Any:
                return echo.EchoReply(message=req.message, seq=req.seq)

        svr = kitex_grpc.new_server(
            server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol("ttheader")
        )
        svr.register_service(thrift.service_info(echo.Echo), ThriftEcho())
    else:
        from gen.echo.v1 import echo_kitex, echo_pb2

        class PbEcho(echo_kitex.EchoHandler):
            async def Unary(self, request: Any) -> Any:
                return echo_pb2.EchoReply(message=request.message, seq=request.seq)

        svr = echo_kitex.new_server(
            PbEcho(), server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(transport)
        )
    await svr.start()
    print(f"LISTENING {svr.address}", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await svr.stop()


def _callers(transport: str, address: str) -> dict[str, tuple[Callable[[], Awaitable[Any]], Any]]:
    """name -> (one call, the client to close)."""
    from kitex_grpc import client, generic, thrift
    from kitex_grpc.codec.thrift import write_cython

    opts = (
        client.with_host_ports(address),
        client.with_transport_protocol(transport),
        client.with_connect_timeout(5),
    )
    if transport == "ttheader":
        echo = thrift.load(ROOT / "idl" / "echo.thrift")
        typed = thrift.new_client(echo.Echo, "echo", *opts)
        g = generic.json_thrift(ROOT / "idl" / "echo.thrift")
        json_cli = generic.new_client(g, "echo", *opts)
        binary = generic.new_client(generic.binary_thrift("Echo"), "echo", *opts)
        request = echo.EchoRequest(message=MESSAGE, seq=1)
        body = write_cython(echo.Echo.echo_args(req=request))
        text = json.dumps({"message": MESSAGE, "seq": 1})
        return {
            "typed": (lambda: typed.echo(request), typed),
            "json": (lambda: json_cli.call("echo", text), json_cli),
            "binary": (lambda: binary.call("echo", body), binary),
        }
    from gen.echo.v1 import echo_kitex, echo_pb2

    typed_pb = echo_kitex.new_client("echo", *opts)
    g = generic.json_pb(ROOT / "protos" / "echo" / "v1" / "echo.proto")
    json_pb = generic.new_client(g, "echo", *opts)
    binary_pb = generic.new_client(generic.binary_pb("Echo", "echo.v1"), "echo", *opts)
    message = echo_pb2.EchoRequest(message=MESSAGE, seq=1)
    data = message.SerializeToString()
    text = json.dumps({"message": MESSAGE, "seq": 1})
    return {
        "typed": (lambda: typed_pb.Unary(message), typed_pb),
        "json": (lambda: json_pb.call("Unary", text), json_pb),
        "binary": (lambda: binary_pb.call("Unary", data), binary_pb),
    }


async def _slice(call: Callable[[], Awaitable[Any]], seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(INFLIGHT)))
    return done / (time.perf_counter() - start)


async def _measure(transport: str, address: str, rounds: int, seconds: float) -> dict[str, list[float]]:
    _pin(1)
    callers = _callers(transport, address)
    rates: dict[str, list[float]] = {name: [] for name in callers}
    try:
        for call, _ in callers.values():  # warm-up: connections, caches
            await _slice(call, 0.5)
        names = list(callers)
        for r in range(rounds):  # each round starts with the next client: no place in the order is kept
            for name in names[r % len(names) :] + names[: r % len(names)]:
                rates[name].append(await _slice(callers[name][0], seconds))
    finally:
        for _, closer in callers.values():
            await closer.close()
    return rates


async def _cpu(transport: str, address: str, rounds: int, calls: int) -> dict[str, list[float]]:
    """Client CPU per call (µs), one call at a time: what each client costs, without contention."""
    _pin(1)
    callers = _callers(transport, address)
    cpu: dict[str, list[float]] = {name: [] for name in callers}
    try:
        for call, _ in callers.values():
            for _ in range(calls // 4):
                await call()
        names = list(callers)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                call = callers[name][0]
                start = time.process_time()
                for _ in range(calls):
                    await call()
                cpu[name].append((time.process_time() - start) / calls * 1e6)
    finally:
        for _, closer in callers.values():
            await closer.close()
    return cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", choices=("ttheader", "grpc_h2"))
    parser.add_argument("--transports", nargs="+", default=["ttheader", "grpc_h2"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slice", type=float, default=2.0, help="seconds per client per round")
    parser.add_argument(
        "--cpu", type=int, metavar="CALLS", help="measure client CPU per call instead, CALLS calls a slice"
    )
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve))
        return 0
    from kitex_grpc.compiled import describe_build

    print(describe_build())
    for transport in args.transports:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.generic", "--serve", transport],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("LISTENING "):
                raise SystemExit(f"server for {transport} did not start: {line!r}")
            address = line.split()[1]
            if args.cpu:
                cpu = asyncio.run(_cpu(transport, address, args.rounds, args.cpu))
                for name, values in cpu.items():
                    print(f"{transport:9} {name:7} {statistics.median(values):7.1f} µs client CPU per call")
                continue
            rates = asyncio.run(_measure(transport, address, args.rounds, args.slice))
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
        typed = statistics.median(rates["typed"])
        for name, values in rates.items():
            median = statistics.median(values)
            print(
                f"{transport:9} {name:7} {median:9.0f} calls/s  {median / typed:5.2f}x typed  "
                f"(rounds: {', '.join(f'{v:.0f}' for v in values)})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
