"""Sans-IO flood guards (kitex_grpc.protocol.h2_limits) and the rate-limited event log."""

from __future__ import annotations

import logging

import pytest

from kitex_grpc.protocol.h2_limits import (
    MAX_PING_STRIKES,
    NO_STREAM_PING_TIME,
    FloodLimits,
    PingEnforcement,
    PingPolicy,
    RateWindow,
)
from kitex_grpc.transport.eventlog import EventLog


def test_ping_policy_strikes_like_grpc_go() -> None:
    policy = PingPolicy(min_time=10.0)
    assert not policy.ping_received(0.0, open_streams=1, writes=0)  # the first is free
    # Too soon, with a stream open: strikes 1 and 2 are tolerated, the third ends the connection.
    assert not policy.ping_received(1.0, 1, 0)
    assert not policy.ping_received(2.0, 1, 0)
    assert policy.strikes == MAX_PING_STRIKES
    assert policy.ping_received(3.0, 1, 0)


def test_ping_policy_forgives_after_the_server_wrote_and_respects_min_time() -> None:
    policy = PingPolicy(min_time=10.0)
    policy.ping_received(0.0, 1, 0)
    policy.ping_received(1.0, 1, 0)
    policy.ping_received(2.0, 1, 0)
    assert not policy.ping_received(3.0, 1, 5)  # the server wrote HEADERS or DATA since: strikes reset
    assert policy.strikes == 0
    assert not policy.ping_received(13.0, 1, 5)  # 10 s later: within policy
    assert policy.strikes == 0
    # A BDP probe after every message the server sent (grpc-go's client on a long stream): never a strike.
    for i in range(6, 50):
        assert not policy.ping_received(13.0 + i / 1000, 1, i)
    assert policy.strikes == 0


def test_ping_policy_without_streams_allows_one_per_two_hours() -> None:
    policy = PingPolicy(min_time=10.0)
    policy.ping_received(0.0, 0, 0)
    policy.ping_received(60.0, 0, 0)
    assert policy.strikes == 1
    policy = PingPolicy(min_time=10.0)
    policy.ping_received(0.0, 0, 0)
    policy.ping_received(NO_STREAM_PING_TIME + 1, 0, 0)
    assert policy.strikes == 0
    permissive = PingPolicy(min_time=10.0, permit_without_stream=True)
    permissive.ping_received(0.0, 0, 0)
    permissive.ping_received(60.0, 0, 0)
    assert permissive.strikes == 0


def test_rate_window_is_a_token_bucket() -> None:
    window = RateWindow(rate=10.0, burst=5)
    assert all(window.allow(0.0) for _ in range(5))
    assert not window.allow(0.0)
    assert window.allow(0.2)  # 2 tokens back, one of them owed
    assert not window.allow(0.2, 2)
    off = RateWindow(rate=0, burst=1)
    assert all(off.allow(0.0) for _ in range(10_000))


@pytest.mark.parametrize(
    "kwargs",
    [{"settings_rate": -1}, {"reset_burst": 0}, {"max_control_replies": 0}],
)
def test_flood_limits_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FloodLimits(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PingEnforcement(min_time=-1)


def test_event_log_writes_one_line_and_a_count_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = EventLog(logging.getLogger("test.eventlog"), interval=1.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="test.eventlog")
    for i in range(10_000):
        now[0] = i / 10_000  # 10,000 events within one second
        log.warning("flood", "event %d", i)
    log.warning("other", "another kind")
    now[0] = 1.5
    log.warning("flood", "event %d", 10_000)  # a new interval: the summary first, then this one
    log.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "event 0",
        "another kind",
        "event 9999 (9999 more in the last 1.5s)",
        "event 10000",
    ]


def test_hpack_decoder_memo_keeps_only_small_blocks() -> None:
    import hpack

    from kitex_grpc.protocol.h2_hpack import CachingDecoder

    encoder, decoder = hpack.Encoder(), CachingDecoder(1 << 24)
    decoder.decode_sized(encoder.encode([(b"x-b", b"v" * 4000)]))  # enters the table (entry 62)
    for n in range(100, 400):  # blocks naming it n times: never remembered
        headers, size = decoder.decode_sized(b"\xbe" * n)
        assert len(headers) == n and size == n * 4035
    assert not decoder._memo
    for i in range(1_000):  # small, table-neutral blocks: remembered, at most 128 of them
        decoder.decode_sized(encoder.encode([(b":path", f"/p{i}".encode(), True)]))
    assert 0 < len(decoder._memo) <= 128


def test_server_options_reach_the_h2_tuning() -> None:
    from kitex_grpc import server
    from kitex_grpc.options._base import fold
    from kitex_grpc.options.server import ServerOptions
    from kitex_grpc.transport.h2.config import SERVER_TUNING

    limits = FloodLimits(reset_rate=0, settings_burst=5)
    options = fold(
        ServerOptions,
        (
            server.with_grpc_keepalive_enforcement_policy(60, permit_without_stream=True),
            server.with_grpc_flood_limits(limits),
            server.with_read_write_timeout(1.5),
            server.with_max_conn_idle_time(30),
        ),
        "server",
    )
    tuning = SERVER_TUNING.with_options(options)
    assert tuning.ping == PingEnforcement(min_time=60.0, permit_without_stream=True)
    assert tuning.flood is limits
    assert (tuning.handshake_timeout, tuning.idle_timeout) == (1.5, 30.0)
    assert [r.name for r in options.records][:2] == [
        "with_grpc_keepalive_enforcement_policy",
        "with_grpc_flood_limits",
    ]
    with pytest.raises(TypeError):
        server.with_grpc_flood_limits({"reset_rate": 0})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        server.with_grpc_keepalive_enforcement_policy(-1)
