"""Backpressure both ways: a receiver that stops reading during a 64 MiB stream stalls the writer,
and the bytes buffered in our structures (queues + the core's pending output) stay bounded.

The receiver's stream window is set by option here, which keeps it static (no BDP growth), so the
bound is the default window; tests/h2/test_bdp.py checks the bound with BDP on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kitex_grpc import client, server
from kitex_grpc.protocol.h2_patched import PatchedH2Connection
from kitex_grpc.transport.h2.config import DEFAULT_STREAM_WINDOW, MAX_FRAME_SIZE, SEND_HIGH_WATER
from tests.h2.helpers import h2_client, h2_server, transport_of
from tests.support import EchoService, Reply, Req

CHUNK = 64 * 1024
TOTAL = 64 * 1024 * 1024
COUNT = TOTAL // CHUNK
# One stream window + the send high-water mark + two messages (one being written, one being read),
# with slack for gRPC prefixes and protobuf framing: far below the 64 MiB being streamed.
BOUND = DEFAULT_STREAM_WINDOW + SEND_HIGH_WATER + 3 * CHUNK
# Messages a writer can have produced while nobody reads: what fits in BOUND.
MAX_SENT = BOUND // CHUNK
assert BOUND * 16 <= TOTAL, "the test only shows a bound if the stream is much larger than it"


class Firehose(EchoService):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.received = 0

    async def ServerStream(self, request: Req) -> AsyncIterator[Reply]:
        payload = b"x" * CHUNK
        for i in range(COUNT):
            self.sent += 1
            yield Reply(payload=payload, seq=i)

    async def ClientStream(self, requests: AsyncIterator[Req]) -> Reply:
        total = 0
        async for r in requests:
            total += len(r.payload)
            self.received += 1
            if self.received == 1:
                self.entered.set()
                await self.release.wait()  # stop reading until the test has looked
        return Reply(seq=self.received, message=str(total))


async def test_slow_client_reader_stalls_the_server_writer() -> None:
    svc = Firehose()
    big = server.with_max_message_size(8 * 1024 * 1024)
    async with h2_server(big, handler=svc) as (svr, _, srv_transport):
        cli = h2_client(svr.address, client.with_grpc_initial_window_size(DEFAULT_STREAM_WINDOW))
        try:
            call = cli.ServerStream(Req())
            first = await call.recv()  # then stop reading
            assert len(first.payload) == CHUNK
            conn = next(iter(srv_transport.connections))
            await asyncio.wait_for(conn.backpressure.wait(), 10)  # the handler's send is waiting
            assert srv_transport.buffered_bytes <= BOUND
            assert transport_of(cli).buffered_bytes <= BOUND
            assert svc.sent <= MAX_SENT, "the writer kept producing while nobody read"
            received = len(first.payload)
            async for reply in call:
                received += len(reply.payload)
                assert transport_of(cli).buffered_bytes <= BOUND
            assert received == TOTAL and svc.sent == COUNT
        finally:
            await cli.close()


async def test_slow_server_reader_stalls_the_client_writer() -> None:
    svc = Firehose()
    big = server.with_max_message_size(8 * 1024 * 1024)
    static = server.with_grpc_initial_window_size(DEFAULT_STREAM_WINDOW)
    async with h2_server(big, static, handler=svc) as (svr, _, srv_transport):
        cli = h2_client(svr.address)
        try:
            stream = await cli.ClientStream()
            sent = 0

            async def produce() -> None:
                nonlocal sent
                payload = b"y" * CHUNK
                for i in range(COUNT):
                    await stream.send(Req(payload=payload, seq=i))
                    sent += 1

            producer = asyncio.create_task(produce())
            await asyncio.wait_for(svc.entered.wait(), 10)
            conn = next(iter(transport_of(cli).connections.values()))
            await asyncio.wait_for(conn.backpressure.wait(), 10)  # stream.send is waiting
            assert not producer.done() and sent <= MAX_SENT
            assert transport_of(cli).buffered_bytes <= BOUND
            assert srv_transport.buffered_bytes <= BOUND
            svc.release.set()
            await asyncio.wait_for(producer, 60)
            reply = await asyncio.wait_for(stream.close_and_recv(), 60)
            assert (reply.seq, reply.message) == (COUNT, str(TOTAL))
        finally:
            await cli.close()


async def _pipelined_bidi(address: str, count: int, inflight: int = 64) -> list[int]:
    """One stream: ``count`` 4 KiB messages, at most ``inflight`` unanswered; returns the echoed seqs."""
    cli = h2_client(address)
    try:
        stream = await cli.Bidi()
        credit = asyncio.Semaphore(inflight)
        got: list[int] = []

        async def send_all() -> None:
            for i in range(count):
                await credit.acquire()
                await stream.send(Req(payload=b"p" * 4096, seq=i))
            await stream.close_send()

        async def receive_all() -> None:
            async for reply in stream:
                got.append(reply.seq)
                credit.release()

        await asyncio.gather(send_all(), receive_all())
        return got
    finally:
        await cli.close()


async def test_pipelined_bidi_of_4k_messages_completes() -> None:
    # 64 x 4 KiB messages in flight on one stream, both directions at once: the shape of the reported
    # "pipelined bidi stall". Each run streams 4 MiB each way and must finish within its time bound.
    async with h2_server() as (svr, _, _t):
        for _run in range(3):
            got = await asyncio.wait_for(_pipelined_bidi(svr.address, 1000), 60)
            assert got == list(range(1000))


async def test_large_messages_travel_in_frames_of_the_advertised_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both sides advertise SETTINGS_MAX_FRAME_SIZE = MAX_FRAME_SIZE, so a 1 MiB message goes in frames of
    # up to 256 KiB each way (5 per message), not in 16 KiB ones (65): receiving costs per frame.
    seen: dict[bool, list[int]] = {True: [], False: []}  # client side? -> DATA payload sizes received
    receive = PatchedH2Connection._receive_fast_data_frame

    def counting(conn: PatchedH2Connection, frame: Any) -> Any:
        seen[conn.config.client_side].append(len(frame.data))
        return receive(conn, frame)

    monkeypatch.setattr(PatchedH2Connection, "_receive_fast_data_frame", counting)
    big = server.with_max_message_size(4 * 1024 * 1024)
    async with h2_server(big) as (svr, _, _t):
        cli = h2_client(svr.address, client.with_max_message_size(4 * 1024 * 1024))
        try:
            payload = bytes(range(256)) * 4096  # 1 MiB
            reply = await cli.Unary(Req(payload=payload))
            assert reply.payload == payload
        finally:
            await cli.close()
    for side in (True, False):
        assert max(seen[side]) == MAX_FRAME_SIZE, seen[side]
        assert sum(seen[side]) > 1024 * 1024 and len(seen[side]) <= 6
