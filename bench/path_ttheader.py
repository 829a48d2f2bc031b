"""CPU per request of the TTHeader server's (and client's) own code, without sockets.

Throughput and even process CPU time on a shared two-core VM swing by tens of per cent between runs;
this swings less (a machine-wide slow spell still shows; alternate the versions you compare). It feeds
pre-encoded requests (idl/echo.thrift ``echo``, the benchmark's payloads) straight into one server
connection's ``data_received`` with a transport that only counts writes, on a real event loop, and
reports the mean microseconds per request over ``--calls`` requests (best of ``--repeat``): detection
aside, everything between the socket and the handler and back runs. Framings: TTHeader (what a Kitex
client sends, with the meta handler's int keys and ``isn``) and Framed (what thriftpy2's and Kitex's
default Thrift clients send). ``--profile FILE`` writes cProfile stats of one measured round.

``--side client`` measures the client instead: 64 tasks call ``echo`` through a Kitex-default client
(``TTHEADER``, pooled connections, the full chain) whose connections have a transport that answers each
request in the next loop turn with a pre-encoded reply (only its seq ids are patched). Everything
between the caller and the socket and back runs, including the task wake-up, but no system call.

    PYTHONPATH=. python -m bench.path_ttheader [--side server|client|both] [--calls 20000] [--repeat 5]
        [--loop asyncio|uvloop] [--framing ttheader framed]

Instructions per request, which a busy machine does not move (run under valgrind, they are the
difference of two runs that differ only in the number of requests, over the 2 x 3840 extra ones)::

    for n in 1280 5120; do valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m \
        bench.path_ttheader --framing framed --payload 64 --repeat 1 --calls $n 2>&1 | grep Collected; done
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
from kitex_grpc import client, server, thrift
from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.transport.ttheader.connection import ClientConnection
from kitex_grpc.transport.ttheader.server import TTHeaderServerTransport
from kitex_grpc.transport.ttheader.server_conn import ServerConnection
from kitex_grpc.transport.ttheader.wire import Framing, encode

_module: Any = thrift.load(IDL, "bench_echo_thrift")
_INFO = thrift.service_info(_module.Echo)


class _CountingTransport(asyncio.Transport):
    """Accepts every write and counts it; ``all_written`` is done at the ``expect``-th."""

    def __init__(self, expect: int, all_written: asyncio.Future[None]) -> None:
        super().__init__()
        self.writes = 0
        self._expect = expect
        self.all_written = all_written

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: Any) -> None:
        self.writes += 1
        if self.writes == self._expect:
            self.all_written.set_result(None)

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
            conn = ServerConnection(transport)
            loop = asyncio.get_running_loop()
            batches = calls // len(frames)
            sink = _CountingTransport(batches * len(frames), loop.create_future())
            conn.connection_made(sink)
            # data_received runs as a loop callback, as asyncio calls it, 64 requests each; the
            # requests run on tasks, so the round ends at the last reply, not at the last feed.

            def feed(
                left: int,
                conn: ServerConnection = conn,
                loop: asyncio.AbstractEventLoop = loop,
            ) -> None:
                for frame in frames:
                    conn.data_received(frame)
                if left > 1:
                    loop.call_soon(feed, left - 1)

            with proc.profiled(profile if round_ == repeat else None):
                start = time.process_time()
                loop.call_soon(feed, batches)
                await asyncio.wait_for(sink.all_written, 600)
                elapsed = time.process_time() - start
            conn.connection_lost(None)
            if sink.writes != batches * len(frames):
                raise RuntimeError(f"{sink.writes} replies for {batches * len(frames)} requests")
            if round_:
                best = min(best, elapsed / (batches * len(frames)))
        return best * 1e6
    finally:
        await svr.stop()


# -- client side -----------------------------------------------------------------------------------------

_REPLY = 2
_SEQ_MARK = b"\x7f\x01\x02\x03"  # the seq id the reply template is encoded with, patched per reply


class _AnsweringTransport(asyncio.Transport):
    """Answers each TTHeader request, in the next loop turn, with the reply template under its seq id."""

    def __init__(self, conn: ClientConnection, reply: bytes) -> None:
        super().__init__()
        self._conn = conn
        self._reply = reply
        header_seq = reply.index(_SEQ_MARK)  # TTHeader's own seq id (KITEX-WIRE.md §1.1), then Thrift's
        self._seq_at = (header_seq, reply.index(_SEQ_MARK, header_seq + 4))
        self._loop = asyncio.get_running_loop()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: Any) -> None:
        seq = bytes(data[8:12])  # length (4), magic and flags (4), then the seq id
        reply = bytearray(self._reply)
        for at in self._seq_at:
            reply[at : at + 4] = seq
        self._loop.call_soon(self._conn.data_received, memoryview(reply))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def _measure_client(payload: int, calls: int, repeat: int, profile: str | None) -> float:
    method = _INFO.methods["echo"]
    reply = _module.EchoReply(message="bench", payload=b"p" * payload, seq=1)
    body = method.serialize_response(_module.Echo.echo_result(success=reply))
    seq = int.from_bytes(_SEQ_MARK, "big")
    reply_bytes = encode(Framing.TTHEADER, THRIFT, "echo", _REPLY, seq, body, {}, {})
    cli = thrift.new_client(
        _module.Echo,
        "echo",
        client.with_host_ports("127.0.0.1:9"),  # never dialled
        client.with_transport_protocol("ttheader"),
        client.with_long_connection(max_idle_per_address=128, max_idle_global=1024),
    )
    transport: Any = cli.client._transport
    # One answered connection per caller, in the pool before the first call: nothing is ever dialled.
    for _ in range(64):
        conn = ClientConnection("127.0.0.1:9", Framing.TTHEADER, transport._max_frame)
        conn.connection_made(_AnsweringTransport(conn, reply_bytes))
        transport._conns.add(conn)
        transport._release(conn)
    request = _module.EchoRequest(message="bench", payload=b"p" * payload, seq=1)
    per_task = max(1, calls // 64)

    async def worker() -> None:
        for _ in range(per_task):
            await cli.echo(request)

    best = float("inf")
    try:
        for round_ in range(repeat + 1):  # the first round warms up (connections, encoders)
            with proc.profiled(profile if round_ == repeat else None):
                start = time.process_time()
                await asyncio.gather(*(worker() for _ in range(64)))
                elapsed = time.process_time() - start
            if round_:
                best = min(best, elapsed / (per_task * 64))
    finally:
        await cli.close()
    return best * 1e6


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
    p.add_argument("--side", default="server", choices=("server", "client", "both"))
    p.add_argument(
        "--framing",
        nargs="+",
        default=["ttheader", "framed"],
        choices=("ttheader", "framed"),
        help="the server side's framings to measure (default both)",
    )
    args = p.parse_args(argv)
    os.environ[proc.LOOP_ENV] = args.loop
    setting = f"(loop: {args.loop}, {proc.compiled_summary()})"
    if args.side != "server":
        print(f"{'side':<10} {'payload':>7} {'client µs/call':>14}   {setting}")
        for i, payload in enumerate(args.payload):
            profile = args.profile if i == 0 and args.side == "client" else None
            us = proc.run(_measure_client(payload, args.calls, args.repeat, profile))
            print(f"{'client':<10} {payload:>7} {us:>14.2f}")
        if args.side == "client":
            return 0
    print(f"{'framing':<10} {'payload':>7} {'server µs/req':>14}   {setting}")
    for framing in (Framing(name) for name in args.framing):
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
