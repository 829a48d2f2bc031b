"""Adaptive flow control (BDP estimation) on the h2 transport, end to end over 127.0.0.1.

Both sides grow their receive windows from PING round trips while data flows; a window option turns
that off; and a receiver that stops reading during a 1 GiB stream still stalls the sender with at most
the largest window buffered, whatever BDP did to the windows before.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from kitex_grpc import client, server
from kitex_grpc.protocol.h2_bdp import BDP_LIMIT, BdpConfig
from kitex_grpc.transport.h2.config import (
    CLIENT_TUNING,
    DEFAULT_STREAM_WINDOW,
    SEND_HIGH_WATER,
    SERVER_TUNING,
)
from kitex_grpc.transport.h2.server import H2ServerTransport
from kitex_grpc.transport.h2.server_conn import ServerConnection
from tests.h2.helpers import h2_client, h2_server, transport_of
from tests.support import EchoService, Reply, Req

CHUNK = 64 * 1024
BIG = server.with_max_message_size(8 * 1024 * 1024)
# Kitex's 64 KiB start, and a sample after every ACK: the windows grow within a few round trips.
SMALL = {"stream_window": 65_535, "connection_window": 65_535, "bdp": BdpConfig(ping_interval=0)}


class Streams(EchoService):
    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.received = 0

    async def ServerStream(self, request: Req) -> AsyncIterator[Reply]:
        payload = b"x" * CHUNK
        for i in range(self.count):
            yield Reply(payload=payload, seq=i)

    async def ClientStream(self, requests: AsyncIterator[Req]) -> Reply:
        async for r in requests:
            self.received += len(r.payload)
        return Reply(message=str(self.received))


def server_conn(transport: H2ServerTransport) -> ServerConnection:
    (conn,) = transport.connections
    return conn


async def test_bdp_grows_the_client_receive_window() -> None:
    svc = Streams(256)  # 16 MiB
    async with h2_server(BIG, handler=svc) as (svr, _, srv_transport):
        cli = h2_client(svr.address, tuning=dataclasses.replace(CLIENT_TUNING, **SMALL))
        try:
            received = 0
            async for reply in cli.ServerStream(Req()):
                received += len(reply.payload)
            assert received == 256 * CHUNK
            (conn,) = transport_of(cli).connections.values()
            # A PING after every ACK is within our server's policy: each follows DATA it wrote.
            assert not conn.closing and not conn.goaway_received.is_set()
            bdp = conn.core._bdp
            assert bdp is not None
            assert 2 * 65_535 <= bdp.stream_window <= BDP_LIMIT
            assert bdp.connection_window == bdp.stream_window
            # The server applied our SETTINGS_INITIAL_WINDOW_SIZE (at least the first growth).
            peer_view = server_conn(srv_transport).core._conn.remote_settings.initial_window_size
            assert 2 * 65_535 <= peer_view <= bdp.stream_window
        finally:
            await cli.close()


async def test_bdp_grows_the_server_receive_window() -> None:
    svc = Streams(0)
    tuning = dataclasses.replace(SERVER_TUNING, **SMALL)
    async with h2_server(BIG, handler=svc, tuning=tuning) as (svr, _, srv_transport):
        cli = h2_client(svr.address)
        try:
            stream = await cli.ClientStream()
            payload = b"y" * CHUNK
            for i in range(256):
                await stream.send(Req(payload=payload, seq=i))
            reply = await asyncio.wait_for(stream.close_and_recv(), 30)
            assert reply.message == str(256 * CHUNK)
            bdp = server_conn(srv_transport).core._bdp
            assert bdp is not None
            assert 2 * 65_535 <= bdp.stream_window <= BDP_LIMIT
            (conn,) = transport_of(cli).connections.values()
            assert conn.core._conn.remote_settings.initial_window_size >= 2 * 65_535
        finally:
            await cli.close()


async def test_a_window_option_keeps_the_windows_static() -> None:
    svc = Streams(64)
    static = server.with_grpc_initial_conn_window_size(1 << 20)
    async with h2_server(BIG, static, handler=svc) as (svr, _, srv_transport):
        cli = h2_client(svr.address, client.with_grpc_initial_window_size(65_535))
        try:
            received = 0
            async for reply in cli.ServerStream(Req()):
                received += len(reply.payload)
            assert received == 64 * CHUNK
            (conn,) = transport_of(cli).connections.values()
            assert conn.core._bdp is None
            srv_conn = server_conn(srv_transport)
            assert srv_conn.core._bdp is None
            assert srv_conn.core._conn.remote_settings.initial_window_size == 65_535
            # The server kept its default stream window: only the connection window was set.
            assert conn.core._conn.remote_settings.initial_window_size == DEFAULT_STREAM_WINDOW
        finally:
            await cli.close()


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Stopper(EchoService):
    """Reads ``before`` messages of a client stream, then stops reading until ``release``."""

    def __init__(self, before: int) -> None:
        super().__init__()
        self.before = before
        self.consumed = 0

    async def ClientStream(self, requests: AsyncIterator[Req]) -> Reply:
        async for r in requests:
            self.consumed += len(r.payload)
            if self.consumed == self.before * MIB:
                self.entered.set()
                await self.release.wait()
        return Reply(message=str(self.consumed))


MIB = 1024 * 1024
GIB_MESSAGES = 1024  # 1 GiB in 1 MiB messages, made one at a time
# What may be in flight once the sender stalls: the largest stream window BDP can set, the bytes the
# client keeps for the window (high-water mark, plus the message whose send passed it), and one message
# the server's handler has not taken (the one after the stop); 1% slack for prefixes and protobuf.
STALL_BOUND = int((BDP_LIMIT + SEND_HIGH_WATER + 2 * MIB) * 1.01)


async def test_receiver_that_stops_reading_stalls_a_1gib_stream_within_the_window() -> None:
    fast = {"bdp": BdpConfig(ping_interval=0)}  # let BDP grow the windows as fast as it can
    svc = Stopper(before=64)
    async with h2_server(BIG, handler=svc, tuning=dataclasses.replace(SERVER_TUNING, **fast)) as (
        svr,
        _,
        srv_transport,
    ):
        cli = h2_client(svr.address, tuning=dataclasses.replace(CLIENT_TUNING, **fast))
        producer: asyncio.Task[None] | None = None
        try:
            stream = await cli.ClientStream()
            payload = b"z" * MIB  # one buffer: the stream is made lazily, never held

            def requests() -> Iterator[Req]:
                for i in range(GIB_MESSAGES):
                    yield Req(payload=payload, seq=i)

            sent = 0
            progress = asyncio.Event()

            async def produce() -> None:
                nonlocal sent
                for req in requests():
                    await stream.send(req)
                    sent += len(req.payload)
                    progress.set()

            rss_before = _rss()
            producer = asyncio.create_task(produce())
            await asyncio.wait_for(svc.entered.wait(), 60)
            # Stalled: no send completes for 1 s. Each completed send is one more MiB, and at most
            # STALL_BOUND of them fit before the window closes, so the loop ends within that many turns.
            for _ in range(STALL_BOUND // MIB + 2):
                progress.clear()
                try:
                    await asyncio.wait_for(progress.wait(), 1.0)
                except TimeoutError:
                    break
            else:
                raise AssertionError(f"the sender kept sending while nobody read ({sent} bytes sent)")
            assert not producer.done()
            (conn,) = transport_of(cli).connections.values()
            (sid,) = conn.calls
            assert conn.core.send_window(sid) == 0  # held back by flow control, not by CPU
            srv_conn = server_conn(srv_transport)
            srv_bdp = srv_conn.core._bdp
            assert srv_bdp is not None and srv_bdp.stream_window <= BDP_LIMIT
            in_flight = sent - svc.consumed
            assert in_flight <= STALL_BOUND, (in_flight, srv_bdp.stream_window)
            assert srv_transport.buffered_bytes <= STALL_BOUND
            assert transport_of(cli).buffered_bytes <= STALL_BOUND
            # Both processes are this one: everything buffered on both sides, far below the 1 GiB.
            assert _rss() - rss_before <= 4 * STALL_BOUND
            # Reading again moves the stream on.
            stalled_at = sent
            svc.release.set()
            for _ in range(64):
                progress.clear()
                await asyncio.wait_for(progress.wait(), 30)
                if sent >= stalled_at + 32 * MIB:
                    break
            assert sent >= stalled_at + 32 * MIB
        finally:
            if producer is not None:
                producer.cancel()
            await cli.close()
