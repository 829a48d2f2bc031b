"""CPU per request of the TTHeader server's own code, without sockets: ``python -m bench.path_ttheader``.

Throughput and even process CPU time on a shared two-core VM swing by tens of per cent between runs;
this swings less (a machine-wide slow spell still shows; alternate the versions you compare). It feeds
pre-encoded requests (idl/echo.thrift ``echo``, the benchmark's payloads) straight into one server
connection's ``data_received`` with a transport that only counts writes, on a real event loop, and
reports the mean microseconds per request over ``--calls`` requests (best of ``--repeat``): detection
aside, everything between the socket and the handler and back runs. Framings: TTHeader (what a Kitex
client sends, with the meta handler's int keys and ``isn``) and Framed (what thriftpy2's and Kitex's
default Thrift clients send). ``--profile FILE`` writes cProfile stats of one measured round.

    PYTHONPATH=. python -m bench.path_ttheader [--calls 20000] [--repeat 5] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import kitex_grpc
from bench import proc
from bench.impl_ttheader import IDL, _Handler
from kitex_grpc import server, thrift
from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.transport.ttheader.server import TTHeaderServerTransport, _ServerConnection
from kitex_grpc.transport.ttheader.wire import Framing, encode

_module: Any = thrift.load(IDL, "bench_echo_thrift")
_INFO = thrift.service_info(_module.Echo)


class _CountingTransport(asyncio.Transport):
    """Accepts every write and counts it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _request(framing: Framing, payload: int, seq: int) -> bytes:
    method = _INFO.methods["echo"]
    req = _module.EchoRequest(message="bench", payload=b"p" * payload, seq=seq)
    body = method.serialize_request(method.pack_request(req))
    if framing.has_header:
        return encode(framing, THRIFT, "echo", 1, seq, body, {"isn": "Echo"}, {22: "1", 12: "1000"})
    return encode(framing, THRIFT, "echo", 1, seq, body)


async def _measure(framing: Framing, payload: int, calls: int, repeat: int, profile: str | None) -> float:
    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol("ttheader")
    )
    svr.register_service(_INFO, _Handler())
    await svr.start()
    try:
        transport = svr._transport
        assert isinstance(transport, TTHeaderServerTransport)
        frames = [_request(framing, payload, seq) for seq in range(1, 65)]
        best = float("inf")
        for round_ in range(repeat + 1):  # the first round warms up (caches, shapes)
            conn = _ServerConnection(transport)
            sink = _CountingTransport()
            conn.connection_made(sink)
            loop = asyncio.get_running_loop()
            # data_received runs as a loop callback (eager handler steps need that), 64 requests each.
            batches = calls // len(frames)
            done = loop.create_future()

            def feed(
                left: int,
                conn: _ServerConnection = conn,
                done: asyncio.Future[None] = done,
                loop: asyncio.AbstractEventLoop = loop,
            ) -> None:
                for frame in frames:
                    conn.data_received(frame)
                if left > 1:
                    loop.call_soon(feed, left - 1)
                else:
                    done.set_result(None)

            with proc.profiled(profile if round_ == repeat else None):
                start = time.process_time()
                loop.call_soon(feed, batches)
                await done
                elapsed = time.process_time() - start
            conn.connection_lost(None)
            if sink.writes != batches * len(frames):
                raise RuntimeError(f"{sink.writes} replies for {batches * len(frames)} requests")
            if round_:
                best = min(best, elapsed / (batches * len(frames)))
        return best * 1e6
    finally:
        await svr.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.path_ttheader", description=__doc__)
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--payload", type=int, nargs="+", default=[64, 4096])
    p.add_argument("--loop", choices=proc.LOOPS, default="asyncio")
    p.add_argument(
        "--profile", default=None, help="cProfile the last round of the first payload into this file"
    )
    p.add_argument("--profile-framing", default="ttheader", choices=("ttheader", "framed"))
    args = p.parse_args(argv)
    os.environ[proc.LOOP_ENV] = args.loop
    print(f"{'framing':<10} {'payload':>7} {'server µs/req':>14}   (loop: {args.loop})")
    for framing in (Framing.TTHEADER, Framing.FRAMED):
        for payload in args.payload:
            profile = (
                args.profile
                if (framing.value == args.profile_framing and payload == args.payload[0])
                else None
            )
            us = proc.run(_measure(framing, payload, args.calls, args.repeat, profile))
            print(f"{framing.value:<10} {payload:>7} {us:>14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
