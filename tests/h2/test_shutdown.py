"""Graceful shutdown over h2 (GOAWAY, drain within the exit wait time, close), and adoption."""

from __future__ import annotations

import asyncio

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import client, server
from kitex_grpc.errors import GetConnectionError, KitexError
from kitex_grpc.transport.h2.server import H2ServerTransport
from tests.h2.helpers import H2, h2_client, h2_server, transport_of
from tests.support import EchoService, Req, wait_for


async def test_stop_drains_in_flight_calls_then_closes() -> None:
    svc = EchoService()
    async with h2_server(server.with_exit_wait_time(10), handler=svc) as (svr, _, srv_transport):
        cli = h2_client(svr.address)
        try:
            in_flight = [asyncio.create_task(cli.Unary(Req(message="gate", seq=i))) for i in range(5)]
            bidi = await cli.Bidi()
            await bidi.send(Req(message="x", seq=9))
            assert (await bidi.recv()).seq == 9
            await svc.arrived(5)
            conn = next(iter(transport_of(cli).connections.values()))
            stopping = asyncio.create_task(svr.stop())
            # The client sees GOAWAY: no new call goes on this connection; a new dial is refused.
            await asyncio.wait_for(conn.goaway_received.wait(), 5)
            with pytest.raises(GetConnectionError):
                await cli.Unary(Req(message="new"))
            assert not stopping.done()
            await bidi.send(Req(message="y", seq=10))  # the open stream still works while draining
            assert (await bidi.recv()).seq == 10
            await bidi.close_send()
            assert [r async for r in bidi] == []
            svc.release.set()
            replies = await asyncio.wait_for(asyncio.gather(*in_flight), 10)
            await asyncio.wait_for(stopping, 10)
            assert sorted(r.seq for r in replies) == [0, 1, 2, 3, 4]
            assert not srv_transport.connections
        finally:
            await cli.close()


async def test_calls_past_the_exit_wait_time_are_cancelled() -> None:
    svc = EchoService()
    async with h2_server(server.with_exit_wait_time(0.2), handler=svc) as (svr, _, _t):
        cli = h2_client(svr.address)
        try:
            call = asyncio.create_task(cli.Unary(Req(message="block")))
            await wait_for(svc.entered)
            await asyncio.wait_for(svr.stop(), 5)
            await wait_for(svc.cancelled)
            with pytest.raises(KitexError):
                await asyncio.wait_for(call, 5)
        finally:
            await cli.close()


async def test_adopted_connections_are_served_and_drained() -> None:
    """The hand-off another server (TTHeader sniffing) uses: set_protocol + connection_made + bytes."""
    svc = EchoService()
    svr = echo_kitex.new_server(svc, server.with_transport_protocol(H2))
    h2 = H2ServerTransport(svr.options, svr.dispatcher)  # never started: adoption only

    class Sniffer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            if len(self.buffer) >= 4:  # "PRI " is enough to know it is HTTP/2
                assert self.buffer.startswith(b"PRI ")
                proto = h2.connection_protocol()
                self.transport.set_protocol(proto)
                proto.connection_made(self.transport)
                proto.data_received(self.buffer)

    listener = await asyncio.get_running_loop().create_server(Sniffer, "127.0.0.1", 0)
    address = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    cli = echo_kitex.new_client("echo", client.with_host_ports(address), client.with_transport_protocol(H2))
    try:
        assert (await cli.Unary(Req(message="adopted"))).message == "adopted"
        assert [r.seq async for r in cli.ServerStream(Req(seq=2))] == [0, 1]
        gated = asyncio.create_task(cli.Unary(Req(message="gate")))
        await svc.arrived(2)
        listener.close()
        draining = asyncio.create_task(h2.drain_adopted(10))
        svc.release.set()
        assert (await asyncio.wait_for(gated, 10)).message == "gate"
        await asyncio.wait_for(draining, 10)
        assert not h2.connections
    finally:
        await cli.close()
        listener.close()
