"""Sans-IO BDP estimation for HTTP/2 receive windows (adaptive flow control).

The receiver measures the bandwidth-delay product of the connection with PING round trips and grows
its receive windows toward it, as grpc-go does (``internal/transport/bdp_estimator.go``, used by
``http2_client.go`` / ``http2_server.go`` ``handleData``, ``handlePing`` and ``updateFlowControl``)
and Kitex's nphttp2 keeps (``pkg/remote/trans/nphttp2/grpc/bdp_estimator.go``):

- On DATA, when no sample is running, a PING with the fixed payload :data:`BDP_PING` is sent and a
  sample starts; the sample counts every flow-controlled byte received until that PING's ACK.
- On the ACK the round trip is smoothed: the mean of the first 10 samples, then
  ``rtt += (sample - rtt) * 0.9``. The bandwidth is ``sample / (1.5 * rtt)`` (the sample is at most
  1.5 times the real BDP on a saturated link). When the sample is at least ``beta`` (0.66) of the
  current estimate and its bandwidth is the highest seen, the estimate becomes ``gamma`` (2) times
  the sample, at most the limit; the caller then raises the connection window and
  SETTINGS_INITIAL_WINDOW_SIZE to it. Windows only grow. Once the limit is reached no more PINGs go out.
- Kitex, unlike grpc-go, starts a sample at most once per second (``bdpPingInterval``); we follow
  Kitex (:data:`BDP_PING_INTERVAL`).

:class:`BdpEstimator` is the arithmetic alone (callers pass ``now``); :class:`BdpFlowControl` applies
it to an ``h2`` connection through h2's public API (PING, SETTINGS, connection WINDOW_UPDATE) with a
clock it is given.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import h2.connection
import h2.exceptions
from h2.settings import SettingCodes

__all__ = [
    "BDP_ALPHA",
    "BDP_BETA",
    "BDP_GAMMA",
    "BDP_LIMIT",
    "BDP_PING",
    "BDP_PING_INTERVAL",
    "BdpConfig",
    "BdpEstimator",
    "BdpFlowControl",
]

# grpc-go / Kitex bdp_estimator.go constants.
BDP_LIMIT = 16 * 1024 * 1024  # bdpLimit = (1 << 20) * 16: the largest window BDP grows to
BDP_ALPHA = 0.9  # weight of a new RTT sample once 10 samples were taken
BDP_BETA = 0.66  # a sample this fraction of the estimate (or more) may grow it
BDP_GAMMA = 2  # the estimate grows to this multiple of the sample
BDP_PING = bytes((2, 4, 16, 16, 9, 14, 7, 7))  # bdpPing payload: tells its ACK from keepalive ACKs
BDP_PING_INTERVAL = 1.0  # Kitex bdpPingInterval: at most one BDP PING per second (grpc-go: no limit)
_BOOTSTRAP_SAMPLES = 10  # the RTT is the plain mean of the first samples
_MIN_RTT = 1e-9  # a clock that did not move between PING and ACK must not divide by zero
_MAX_WINDOW = 2**31 - 1  # RFC 9113 §6.9.1


@dataclass(frozen=True, kw_only=True, slots=True)
class BdpConfig:
    """BDP estimation of one connection: ``window_limit`` is the largest receive window it sets
    (grpc-go and Kitex: 16 MiB), ``ping_interval`` the least time between two samples in seconds
    (Kitex: 1 s; grpc-go: 0)."""

    window_limit: int = BDP_LIMIT
    ping_interval: float = BDP_PING_INTERVAL

    def __post_init__(self) -> None:
        if not 65_535 <= self.window_limit <= _MAX_WINDOW:
            raise ValueError("window_limit must be in [65535, 2**31)")
        if self.ping_interval < 0:
            raise ValueError("ping_interval must not be negative")


class BdpEstimator:
    """grpc-go's BDP estimator as a pure state machine (see the module docstring).

    ``bdp`` starts at the receive window in use. :meth:`on_data` returns the PING payload to send
    when a sample starts; :meth:`on_ping_ack` returns the new window when the estimate grew.
    """

    __slots__ = (
        "_bw_max",
        "_sample",
        "_sample_count",
        "_sending",
        "_sent_at",
        "bdp",
        "limit",
        "ping_interval",
        "rtt",
    )

    def __init__(self, bdp: int, *, limit: int = BDP_LIMIT, ping_interval: float = BDP_PING_INTERVAL) -> None:
        if bdp <= 0 or limit <= 0:
            raise ValueError("bdp and limit must be positive")
        self.bdp = min(bdp, limit)
        self.limit = limit
        self.ping_interval = ping_interval
        self.rtt = 0.0  # smoothed round trip, seconds
        self._bw_max = 0.0  # highest bandwidth seen, bytes per second
        self._sample = 0  # bytes received since the running sample's PING
        self._sample_count = 0
        self._sending = False  # a sample is running: its PING is out
        self._sent_at = float("-inf")  # when the last BDP PING went out

    @property
    def sampling(self) -> bool:
        """Whether a BDP PING is out and its bytes are being counted."""
        return self._sending

    def on_data(self, n: int, now: float) -> bytes | None:
        """``n`` flow-controlled bytes of DATA arrived; returns :data:`BDP_PING` when one must be sent."""
        if self.bdp >= self.limit:
            return None
        if self._sending:
            self._sample += n
            return None
        if now - self._sent_at < self.ping_interval:
            return None
        self._sending = True
        self._sample = n
        self._sent_at = now
        self._sample_count += 1
        return BDP_PING

    def on_ping_ack(self, payload: bytes, now: float) -> int | None:
        """A PING ACK with ``payload`` arrived; returns the new window when the estimate grew.

        ACKs of other PINGs (keepalive) and ACKs with no sample running are ignored.
        """
        if payload != BDP_PING or not self._sending:
            return None
        self._sending = False
        rtt_sample = now - self._sent_at
        if self._sample_count < _BOOTSTRAP_SAMPLES:
            self.rtt += (rtt_sample - self.rtt) / self._sample_count
        else:
            self.rtt += (rtt_sample - self.rtt) * BDP_ALPHA
        bandwidth = self._sample / (max(self.rtt, _MIN_RTT) * 1.5)
        if bandwidth > self._bw_max:
            self._bw_max = bandwidth
        if self._sample >= BDP_BETA * self.bdp and bandwidth == self._bw_max and self.bdp < self.limit:
            self.bdp = min(int(BDP_GAMMA * self._sample), self.limit)
            return self.bdp
        return None


class BdpFlowControl:
    """Applies a :class:`BdpEstimator` to one ``h2`` connection (the core's hook, see ``h2_call``).

    ``stream_window`` and ``connection_window`` are the receive windows the connection advertised;
    they only grow. ``clock`` gives monotonic seconds.
    """

    __slots__ = ("_clock", "connection_window", "estimator", "stream_window")

    def __init__(
        self,
        config: BdpConfig,
        *,
        stream_window: int,
        connection_window: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.estimator = BdpEstimator(
            max(stream_window, 1), limit=config.window_limit, ping_interval=config.ping_interval
        )
        self.stream_window = stream_window
        self.connection_window = connection_window
        self._clock = clock

    @classmethod
    def create(
        cls, config: BdpConfig | None, stream_window: int, connection_window: int
    ) -> BdpFlowControl | None:
        """A controller for a connection that advertised these windows; ``None`` when ``config`` is."""
        if config is None:
            return None
        return cls(config, stream_window=stream_window, connection_window=connection_window)

    def data_received(self, conn: h2.connection.H2Connection, n: int) -> None:
        """Count ``n`` flow-controlled bytes; queue the BDP PING when a sample starts."""
        payload = self.estimator.on_data(n, self._clock())
        if payload is not None:
            try:
                conn.ping(payload)
            except h2.exceptions.ProtocolError:  # the connection is closing: no more samples
                self.estimator.bdp = self.estimator.limit

    def ping_acked(self, conn: h2.connection.H2Connection, payload: bytes) -> bool:
        """Handle a PING ACK; returns True when it was the BDP PING's (not for the shell)."""
        if payload != BDP_PING:
            return False
        window = self.estimator.on_ping_ack(payload, self._clock())
        if window is not None:
            self._grow(conn, window)
        return True

    def _grow(self, conn: h2.connection.H2Connection, window: int) -> None:
        # grpc-go updateFlowControl: the connection window by WINDOW_UPDATE on stream 0 (SETTINGS do
        # not change it, RFC 9113 §6.9.2), every stream window, open and future, by
        # SETTINGS_INITIAL_WINDOW_SIZE (h2 applies it to its streams when the peer ACKs it).
        try:
            if window > self.connection_window:
                conn.increment_flow_control_window(window - self.connection_window)
                self.connection_window = window
            if window > self.stream_window:
                conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
                self.stream_window = window
        except h2.exceptions.ProtocolError:  # the connection is closing
            self.estimator.bdp = self.estimator.limit
