"""The connection-pool gauge as the TTHeader and grpcio client transports report it."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from kitex_grpc import callopt, client, thrift
from kitex_grpc.observability import metrics as api
from kitex_grpc.transport import pool_gauges
from tests.observability.otel_support import OTel
from tests.support import Req, connect, serve
from tests.ttheader import support as tt

GAUGE = "kitex.client.connection_pool.size"


def pool_points(otel: OTel, transport: str, *addresses: str) -> dict[str, int]:
    """The gauge's value per address (of ``addresses``: other tests' servers are not ours) for one
    transport, as collected now."""
    return {
        str(p.attributes["address"]): int(p.value)
        for p in otel.metrics().get(GAUGE, [])
        if p.attributes.get("transport") == transport and p.attributes.get("address") in addresses
    }


async def test_ttheader_pool_gauge_counts_idle_and_in_use_per_address() -> None:
    otel = OTel(tracing=False)
    async with tt.serve() as (svr, handler):
        address = svr.address
        async with tt.connect(address, "ttheader", client.with_suite(otel.suite)) as echo:
            assert pool_points(otel, "ttheader", address) == {}  # no connection yet
            await asyncio.gather(*(echo.echo(tt.Req(message=str(i))) for i in range(3)))
            assert pool_points(otel, "ttheader", address) == {address: 3}  # three idle

            # one call held in the handler (in use) while three more run: two reuse idle ones, one dials
            gated = asyncio.ensure_future(echo.echo(tt.Req(message="gate")))
            await asyncio.wait_for(handler.entered.wait(), 5)
            await asyncio.gather(*(echo.echo(tt.Req(message=str(i))) for i in range(3)))
            transport: Any = echo.client._transport
            assert transport.pool.idle_count(address) == 3
            assert pool_points(otel, "ttheader", address) == {address: 4}  # 3 idle + 1 in use

            handler.release.set()
            await asyncio.wait_for(gated, 5)
            assert pool_points(otel, "ttheader", address) == {address: 4}

            await transport.close_address(address)
            assert pool_points(otel, "ttheader", address) == {}
            await echo.echo(tt.Req(message="again"))
            assert pool_points(otel, "ttheader", address) == {address: 1}
        # closed: the transport unregistered its callback
        assert pool_points(otel, "ttheader", address) == {}
        assert all(attrs.get("address") != address for attrs, _ in api.pool_sizes())


def test_a_ttheader_client_nobody_closed_unregisters_its_gauge_once_collected() -> None:
    # A pool with idle connections stays referenced by its idle-timeout timer (it still has
    # connections to close); one with none is collected, and its finalizer unregisters.
    registered = set(pool_gauges._size_callbacks)
    echo = thrift.new_client(
        tt.echo_thrift.Echo,
        "echo",
        client.with_host_ports("127.0.0.1:9"),
        client.with_transport_protocol("ttheader"),
    )
    ours = set(pool_gauges._size_callbacks) - registered
    assert len(ours) == 1
    del echo
    gc.collect()
    assert not ours & set(pool_gauges._size_callbacks)


async def test_grpc_pool_gauge_counts_channels_per_address() -> None:
    otel = OTel(tracing=False)
    async with serve() as (svr_a, _), serve() as (svr_b, _):
        ours = (svr_a.address, svr_b.address)
        async with connect(svr_a, client.with_suite(otel.suite)) as cli:
            assert pool_points(otel, "grpc", *ours) == {}
            await cli.Unary(Req(message="a"))
            assert pool_points(otel, "grpc", *ours) == {svr_a.address: 1}
            await cli.Unary(Req(message="b"), callopt.with_host_port(svr_b.address))
            assert pool_points(otel, "grpc", *ours) == {svr_a.address: 1, svr_b.address: 1}

            transport: Any = cli.client._transport
            await transport.close_address(svr_b.address)
            assert pool_points(otel, "grpc", *ours) == {svr_a.address: 1}
        assert pool_points(otel, "grpc", *ours) == {}
        assert all(attrs.get("address") not in ours for attrs, _ in api.pool_sizes())
