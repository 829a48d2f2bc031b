"""The BDP estimator's arithmetic (grpc-go bdp_estimator.go facts) and its h2 window updates."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from h2.settings import SettingCodes

from kitex_grpc.protocol.h2_bdp import (
    BDP_LIMIT,
    BDP_PING,
    BDP_PING_INTERVAL,
    BdpConfig,
    BdpEstimator,
    BdpFlowControl,
)


def sample(est: BdpEstimator, nbytes: int, sent: float, acked: float) -> int | None:
    """One measurement cycle: ``nbytes`` arrive in one DATA at ``sent``, the ACK at ``acked``."""
    assert est.on_data(nbytes, sent) == BDP_PING
    return est.on_ping_ack(BDP_PING, acked)


def test_constants_are_grpc_go_and_kitex() -> None:
    assert BDP_LIMIT == 16 * 1024 * 1024
    assert bytes([2, 4, 16, 16, 9, 14, 7, 7]) == BDP_PING
    assert BDP_PING_INTERVAL == 1.0


def test_first_data_starts_a_sample_and_later_data_is_counted() -> None:
    est = BdpEstimator(65_535, ping_interval=0)
    assert est.on_data(1000, 10.0) == BDP_PING
    assert est.sampling
    assert est.on_data(2000, 10.001) is None
    assert est.on_data(62_535, 10.002) is None
    # 65,535 bytes in 10 ms: the estimate grows to twice the sample.
    assert est.on_ping_ack(BDP_PING, 10.01) == 131_070
    assert est.bdp == 131_070
    assert not est.sampling
    assert est.rtt == pytest.approx(0.01)


def test_a_sample_below_beta_of_the_estimate_does_not_grow_it() -> None:
    est = BdpEstimator(100_000, ping_interval=0)
    assert sample(est, 65_999, 0.0, 0.001) is None  # 0.66 * 100,000 = 66,000
    assert est.bdp == 100_000
    assert sample(est, 66_000, 1.0, 1.001) == 132_000


def test_a_sample_slower_than_the_best_bandwidth_does_not_grow_it() -> None:
    est = BdpEstimator(100_000, ping_interval=0)
    assert sample(est, 100_000, 0.0, 0.001) == 200_000  # 66.7 MB/s
    # 150,000 >= 0.66 * 200,000 but the smoothed RTT is (0.001 + 0.01) / 2: 18.2 MB/s.
    assert sample(est, 150_000, 1.0, 1.01) is None
    assert est.rtt == pytest.approx(0.0055)
    assert est.bdp == 200_000


def test_rtt_is_the_mean_of_the_first_samples_then_weighted() -> None:
    est = BdpEstimator(1 << 20, limit=1 << 30, ping_interval=0)
    t = 0.0
    for i in range(1, 10):  # samples 1..9 of 1 ms .. 9 ms: their plain mean
        sample(est, 1, t, t + i / 1000)
        t += 1
    assert est.rtt == pytest.approx(0.005)
    sample(est, 1, t, t + 0.015)  # the tenth: rtt += (0.015 - rtt) * 0.9
    assert est.rtt == pytest.approx(0.005 + 0.01 * 0.9)


def test_the_estimate_stops_at_the_limit_and_then_no_ping_is_sent() -> None:
    est = BdpEstimator(1 << 20, ping_interval=0)
    assert sample(est, 10 << 20, 0.0, 0.001) == BDP_LIMIT
    assert est.bdp == BDP_LIMIT
    assert est.on_data(1 << 20, 1.0) is None
    assert not est.sampling


def test_a_small_limit_caps_the_first_growth() -> None:
    est = BdpEstimator(65_535, limit=100_000, ping_interval=0)
    assert sample(est, 65_535, 0.0, 0.001) == 100_000


def test_kitex_ping_interval_spaces_the_samples() -> None:
    est = BdpEstimator(65_535)  # Kitex: one BDP PING per second at most
    assert est.on_data(10, 5.0) == BDP_PING
    est.on_ping_ack(BDP_PING, 5.001)
    assert est.on_data(10, 5.5) is None
    assert not est.sampling
    assert est.on_data(10, 5.999) is None
    assert est.on_data(10, 6.0) == BDP_PING


def test_other_acks_are_ignored() -> None:
    est = BdpEstimator(65_535, ping_interval=0)
    assert est.on_ping_ack(BDP_PING, 1.0) is None  # no sample running
    assert est.on_data(65_535, 2.0) == BDP_PING
    assert est.on_ping_ack(b"keepaliv", 2.001) is None
    assert est.sampling
    assert est.on_ping_ack(BDP_PING, 2.001) == 131_070


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="window_limit"):
        BdpConfig(window_limit=1000)
    with pytest.raises(ValueError, match="ping_interval"):
        BdpConfig(ping_interval=-1)
    with pytest.raises(ValueError, match="positive"):
        BdpEstimator(0)


def _pair() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def test_growth_sends_a_connection_window_update_and_initial_window_size() -> None:
    client, server = _pair()
    now = [0.0]
    bdp = BdpFlowControl(
        BdpConfig(ping_interval=0), stream_window=65_535, connection_window=65_535, clock=lambda: now[0]
    )
    bdp.data_received(client, 65_535)
    events = server.receive_data(client.data_to_send())
    pings = [ev for ev in events if isinstance(ev, h2.events.PingReceived)]
    assert [ev.ping_data for ev in pings] == [BDP_PING]
    now[0] = 0.002
    assert not bdp.ping_acked(client, b"keepaliv")
    assert bdp.ping_acked(client, BDP_PING)
    events = server.receive_data(client.data_to_send())
    updates = [(ev.stream_id, ev.delta) for ev in events if isinstance(ev, h2.events.WindowUpdated)]
    assert updates == [(0, 65_535)]
    settings = [ev for ev in events if isinstance(ev, h2.events.RemoteSettingsChanged)]
    assert len(settings) == 1
    assert settings[0].changed_settings[SettingCodes.INITIAL_WINDOW_SIZE].new_value == 131_070
    assert server.remote_settings.initial_window_size == 131_070
    assert (bdp.stream_window, bdp.connection_window) == (131_070, 131_070)


def test_growth_below_a_larger_connection_window_only_raises_the_stream_window() -> None:
    client, server = _pair()
    client.increment_flow_control_window(16 * 1024 * 1024 - 65_535)
    server.receive_data(client.data_to_send())
    now = [0.0]
    bdp = BdpFlowControl(
        BdpConfig(ping_interval=0), stream_window=1 << 20, connection_window=16 << 20, clock=lambda: now[0]
    )
    bdp.data_received(client, 1 << 20)
    now[0] = 0.001
    assert bdp.ping_acked(client, BDP_PING)
    events = server.receive_data(client.data_to_send())
    assert not [ev for ev in events if isinstance(ev, h2.events.WindowUpdated)]
    settings = [ev for ev in events if isinstance(ev, h2.events.RemoteSettingsChanged)]
    assert settings[0].changed_settings[SettingCodes.INITIAL_WINDOW_SIZE].new_value == 2 << 20
    assert bdp.connection_window == 16 << 20
