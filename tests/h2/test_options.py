"""Kitex's HTTP/2 knobs as options (``with_grpc_*``): validation, records, and their effect on GRPC_H2
(and the grpcio arguments they map to)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from kitex_grpc import client, server
from kitex_grpc.options._base import fold
from kitex_grpc.options.client import ClientOptions
from kitex_grpc.options.server import ServerOptions
from kitex_grpc.protocol.h2_bdp import BdpConfig
from kitex_grpc.transport.grpcio.client import GrpcioClientTransport, grpc_h2_args
from kitex_grpc.transport.h2.config import CLIENT_TUNING, SERVER_TUNING, H2Tuning
from tests.h2.helpers import h2_client, h2_server, transport_of
from tests.support import EchoService, Req

WINDOW_OPTIONS = (
    client.with_grpc_initial_window_size,
    client.with_grpc_initial_conn_window_size,
    server.with_grpc_initial_window_size,
    server.with_grpc_initial_conn_window_size,
)
SETTING_OPTIONS = (
    client.with_grpc_max_header_list_size,
    server.with_grpc_max_header_list_size,
    server.with_grpc_max_concurrent_streams,
)


@pytest.mark.parametrize("make", WINDOW_OPTIONS, ids=lambda f: f"{f.__module__}.{f.__name__}")
@pytest.mark.parametrize("bad", [0, -1, 65_534, 2**31, 1.5e6, True, "65535", None])
def test_window_options_refuse_bad_sizes(make: Any, bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match=make.__name__):
        make(bad)


@pytest.mark.parametrize("make", SETTING_OPTIONS, ids=lambda f: f"{f.__module__}.{f.__name__}")
@pytest.mark.parametrize("bad", [0, -5, 2**32, 2.0, True, None])
def test_setting_options_refuse_bad_values(make: Any, bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match=make.__name__):
        make(bad)


@pytest.mark.parametrize("make", [client.with_grpc_keepalive, server.with_grpc_keepalive])
@pytest.mark.parametrize(
    ("time", "timeout"), [(0, 20), (-1, 20), (math.nan, 20), (math.inf, 20), (10, 0), (10, -1), ("1", 20)]
)
def test_keepalive_option_refuses_bad_durations(make: Any, time: Any, timeout: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="with_grpc_keepalive"):
        make(time, timeout)


def test_options_set_fields_and_are_recorded() -> None:
    c = fold(
        ClientOptions,
        (
            client.with_grpc_initial_window_size(128 * 1024),
            client.with_grpc_initial_conn_window_size(1 << 20),
            client.with_grpc_keepalive(30),
            client.with_grpc_max_header_list_size(8192),
        ),
        "client",
    )
    assert (c.grpc_initial_window_size, c.grpc_initial_conn_window_size) == (128 * 1024, 1 << 20)
    assert (c.grpc_keepalive_time, c.grpc_keepalive_timeout) == (30.0, 20.0)  # Kitex's 20 s timeout
    assert c.grpc_max_header_list_size == 8192
    assert [(r.name, r.value) for r in c.records] == [
        ("with_grpc_initial_window_size", "131072"),
        ("with_grpc_initial_conn_window_size", "1048576"),
        ("with_grpc_keepalive", "(30.0, 20.0)"),
        ("with_grpc_max_header_list_size", "8192"),
    ]
    s = fold(
        ServerOptions,
        (server.with_grpc_keepalive(7200, 20), server.with_grpc_max_concurrent_streams(100)),
        "server",
    )
    assert (s.grpc_keepalive_time, s.grpc_keepalive_timeout, s.grpc_max_concurrent_streams) == (
        7200.0,
        20.0,
        100,
    )
    assert [r.name for r in s.records] == ["with_grpc_keepalive", "with_grpc_max_concurrent_streams"]
    # unset: the transports keep their defaults (KITEX-WIRE.md §3)
    assert CLIENT_TUNING.with_options(fold(ClientOptions, (), "client")) is CLIENT_TUNING
    assert SERVER_TUNING.with_options(fold(ServerOptions, (), "server")) is SERVER_TUNING
    # windows start higher than Kitex's 64 KiB and grow by BDP estimation to 16 MiB (see h2/config.py)
    assert (SERVER_TUNING.stream_window, SERVER_TUNING.connection_window) == (1 << 20, 16 << 20)
    assert SERVER_TUNING.bdp == CLIENT_TUNING.bdp == BdpConfig(window_limit=16 << 20, ping_interval=1.0)
    # either window option keeps the windows static, as in Kitex
    only_conn = fold(ServerOptions, (server.with_grpc_initial_conn_window_size(1 << 20),), "server")
    assert SERVER_TUNING.with_options(only_conn).bdp is None
    only_stream = fold(ClientOptions, (client.with_grpc_initial_window_size(1 << 20),), "client")
    assert CLIENT_TUNING.with_options(only_stream).bdp is None
    assert (SERVER_TUNING.keepalive_time, SERVER_TUNING.keepalive_timeout) == (7200.0, 20.0)


async def test_keepalive_and_header_options_reach_h2_tuning() -> None:
    opts = (server.with_grpc_keepalive(600, 5), server.with_grpc_max_header_list_size(32 * 1024))
    async with h2_server(*opts) as (svr, _, srv_transport):
        tuning: H2Tuning = srv_transport._tuning
        assert (tuning.keepalive_time, tuning.keepalive_timeout) == (600.0, 5.0)
        assert tuning.max_header_list_size == 32 * 1024
        cli = h2_client(
            svr.address, client.with_grpc_keepalive(45, 3), client.with_grpc_max_header_list_size(4096)
        )
        try:
            ctuning = transport_of(cli)._tuning
            assert (ctuning.keepalive_time, ctuning.keepalive_timeout) == (45.0, 3.0)
            assert ctuning.max_header_list_size == 4096
            assert (await cli.Unary(Req(message="k"))).message == "k"
            conn = next(iter(transport_of(cli).connections.values()))
            assert conn._keepalive_timer is not None  # the client pings now (grpc-go's default: never)
        finally:
            await cli.close()


async def test_max_concurrent_streams_option_queues_the_clients_third_call() -> None:
    svc = EchoService()
    async with h2_server(server.with_grpc_max_concurrent_streams(2), handler=svc) as (svr, _, srv_transport):
        assert srv_transport._tuning.max_concurrent_streams == 2
        cli = h2_client(svr.address)
        try:
            calls = [asyncio.create_task(cli.Unary(Req(message="gate", seq=i))) for i in range(3)]
            await svc.arrived(2)
            conn = next(iter(transport_of(cli).connections.values()))
            # the client honours the server's SETTINGS: two streams open, the third call waits
            assert svc.calls == 2 and len(conn.calls) == 2 and len(conn._stream_waiters) == 1
            svc.release.set()
            replies = await asyncio.wait_for(asyncio.gather(*calls), 10)
            assert sorted(r.seq for r in replies) == [0, 1, 2]
            assert svc.calls == 3 and len(transport_of(cli).connections) == 1
        finally:
            await cli.close()


async def test_smallest_windows_still_move_a_1_mib_message_both_ways() -> None:
    windows = (65_535, 65_535)
    sopts = (
        server.with_grpc_initial_window_size(windows[0]),
        server.with_grpc_initial_conn_window_size(windows[1]),
    )
    async with h2_server(*sopts) as (svr, _, srv_transport):
        assert (srv_transport._tuning.stream_window, srv_transport._tuning.connection_window) == windows
        cli = h2_client(
            svr.address,
            client.with_grpc_initial_window_size(windows[0]),
            client.with_grpc_initial_conn_window_size(windows[1]),
        )
        try:
            tuning = transport_of(cli)._tuning
            assert (tuning.stream_window, tuning.connection_window) == windows
            assert tuning.bdp is None and srv_transport._tuning.bdp is None
            payload = bytes(range(256)) * 4096  # 1 MiB: sixteen times either window
            reply = await asyncio.wait_for(cli.Unary(Req(message="big", payload=payload)), 30)
            assert reply.payload == payload
        finally:
            await cli.close()


def test_grpcio_gets_the_options_with_an_exact_channel_argument() -> None:
    c = fold(
        ClientOptions,
        (
            client.with_grpc_keepalive(30, 5),
            client.with_grpc_max_header_list_size(8192),
            client.with_grpc_initial_window_size(1 << 20),  # GRPC_H2 only: no grpcio argument
            client.with_grpcio_channel_options([("grpc.keepalive_time_ms", 1000)]),
        ),
        "client",
    )
    assert grpc_h2_args(c) == [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.max_metadata_size", 8192),
    ]
    args = GrpcioClientTransport(c)._channel_args
    # the raw grpcio channel options come last, so they win
    assert args[-1] == ("grpc.keepalive_time_ms", 1000) and ("grpc.max_metadata_size", 8192) in args
    s = fold(ServerOptions, (server.with_grpc_max_concurrent_streams(8),), "server")
    assert grpc_h2_args(s) == [("grpc.max_concurrent_streams", 8)]
