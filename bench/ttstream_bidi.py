"""Bidi streaming throughput: Thrift over TTHeader Streaming against Thrift and protobuf over GRPC_H2.

::

    PYTHONPATH=. python -m bench.ttstream_bidi                 # 3 s per case, 3 rounds, 64 in flight
    PYTHONPATH=. python -m bench.ttstream_bidi --duration 5 --rounds 5 --inflight 64

One server process (``--serve``) serves both: idl/stream.thrift's StreamService.EchoBidi (ttstream is
handed over on the TTHeader port) and protos/echo/v1 Echo.Bidi (HTTP/2 is handed to the GRPC_H2
transport on the same port). The client (this process) keeps ``--inflight`` messages in flight on one
bidi stream: a sender sends while fewer are outstanding, a receiver counts the echoes. Messages carry
a 64-byte or 4 KiB payload. Prints messages per second per case and the ratios (Thrift over GRPC_H2
is ``application/grpc+thrift``: the same payload codec as ttstream, so that ratio is the transports').
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _thrift() -> Any:
    from kitex_grpc import thrift

    return thrift.load(ROOT / "idl" / "stream.thrift", "stream_bench_thrift")


async def serve() -> None:
    import kitex_grpc
    from gen.echo.v1 import echo_kitex, echo_pb2
    from kitex_grpc import TransportProtocol, server, thrift

    stream_thrift = _thrift()

    class ThriftEcho:
        async def EchoBidi(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            reply = stream_thrift.StreamReply
            async for r in requests:
                yield reply(message=r.message, payload=r.payload, seq=r.seq)

    class PbEcho(echo_kitex.EchoHandler):
        async def Bidi(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            reply = echo_pb2.EchoReply
            async for r in requests:
                yield reply(message=r.message, payload=r.payload, seq=r.seq)

    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(TransportProtocol.TTHEADER_STREAMING),
    )
    svr.register_service(thrift.service_info(stream_thrift.StreamService), ThriftEcho())
    svr.register_service(echo_kitex.ECHO_SERVICE_INFO, PbEcho())
    await svr.start()
    print(f"LISTENING {svr.address}", flush=True)
    await svr.run()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class Rate:
    """One case's messages per second and CPU microseconds per message of each process."""

    def __init__(self, rate: float, client_us: float, server_us: float) -> None:
        self.rate, self.client_us, self.server_us = rate, client_us, server_us


async def pipelined(
    stream: Any, message_type: Any, payload: bytes, inflight: int, duration: float, server_pid: int
) -> Rate:
    """Messages per second echoed on ``stream`` with ``inflight`` outstanding (after a 0.5 s warm-up),
    and the CPU per message of this process and of the server process ``server_pid``."""
    window = asyncio.Semaphore(inflight)
    received = 0
    stop = False

    async def sender() -> None:
        seq = 0
        while not stop:
            await window.acquire()
            await stream.send(message_type(message="m", payload=payload, seq=seq))
            seq += 1

    async def receiver() -> None:
        nonlocal received
        while True:
            await stream.recv()
            received += 1
            window.release()

    tasks = [asyncio.create_task(sender()), asyncio.create_task(receiver())]
    await asyncio.sleep(0.5)  # warm-up: not counted
    start_count, start = received, time.perf_counter()
    cpu, server_cpu = time.process_time(), process_cpu(server_pid)
    await asyncio.sleep(duration)
    count = received - start_count
    rate = count / (time.perf_counter() - start)
    client_us = (time.process_time() - cpu) / max(count, 1) * 1e6
    server_us = (process_cpu(server_pid) - server_cpu) / max(count, 1) * 1e6
    stop = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stream.cancel()
    return Rate(rate, client_us, server_us)


CASES = ("thrift/ttstream", "thrift/grpc_h2", "protobuf/grpc_h2")


async def one_case(
    address: str, name: str, size: int, duration: float, inflight: int, server_pid: int
) -> Rate:
    from gen.echo.v1 import echo_kitex, echo_pb2
    from kitex_grpc import TransportProtocol, client, thrift

    payload = b"x" * size
    if name == "protobuf/grpc_h2":
        pcli = echo_kitex.new_echo_client(
            "bench",
            client.with_host_ports(address),
            client.with_transport_protocol(TransportProtocol.GRPC_H2),
            client.with_connect_timeout(5),
        )
        try:
            return await pipelined(
                await pcli.Bidi(), echo_pb2.EchoRequest, payload, inflight, duration, server_pid
            )
        finally:
            await pcli.close()
    stream_thrift = _thrift()
    protocol = (
        TransportProtocol.TTHEADER_STREAMING if name == "thrift/ttstream" else TransportProtocol.GRPC_H2
    )
    async with thrift.new_client(
        stream_thrift.StreamService,
        "bench",
        client.with_host_ports(address),
        client.with_transport_protocol(protocol),
        client.with_connect_timeout(5),
    ) as cli:
        return await pipelined(
            await cli.EchoBidi(), stream_thrift.StreamRequest, payload, inflight, duration, server_pid
        )


async def measure(
    address: str, duration: float, inflight: int, rounds: int, server_pid: int
) -> dict[tuple[str, int], list[Rate]]:
    """Every case once per round, the cases in turn, so a slow spell of the machine hits them alike."""
    rates: dict[tuple[str, int], list[Rate]] = {}
    for _ in range(rounds):
        for size in (64, 4096):
            for name in CASES:
                rate = await one_case(address, name, size, duration, inflight, server_pid)
                rates.setdefault((name, size), []).append(rate)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", help="run the server (used by the runner)")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every case; the median is shown")
    args = parser.parse_args()
    from kitex_grpc import eventloop

    if args.serve:
        eventloop.run(serve())
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.ttstream_bidi", "--serve"], stdout=subprocess.PIPE, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("LISTENING "), line
        runs = eventloop.run(measure(line.split()[1], args.duration, args.inflight, args.rounds, proc.pid))
    finally:
        proc.terminate()
        proc.wait(10)
    rates = {key: statistics.median(r.rate for r in values) for key, values in runs.items()}
    print(
        f"bidi pipelined, {args.inflight} in flight, {args.duration:g} s per case, "
        f"median of {args.rounds} rounds (messages/s; CPU us per message, client + server)"
    )
    for (name, size), rate in rates.items():
        values = runs[(name, size)]
        spread = ", ".join(f"{r.rate:,.0f}" for r in values)
        client_us = statistics.median(r.client_us for r in values)
        server_us = statistics.median(r.server_us for r in values)
        print(
            f"  {name:18s} {size:5d} B  {rate:10,.0f}   cpu/msg {client_us:5.1f} + {server_us:5.1f} us"
            f"   ({spread})"
        )
    for size in (64, 4096):
        ttstream = rates[("thrift/ttstream", size)]
        print(
            f"  at {size} B: ttstream / protobuf-h2 {ttstream / rates[('protobuf/grpc_h2', size)]:.2f}x, "
            f"ttstream / thrift-h2 {ttstream / rates[('thrift/grpc_h2', size)]:.2f}x"
        )


if __name__ == "__main__":
    main()
