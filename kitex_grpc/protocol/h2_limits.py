"""Sans-IO guards of an HTTP/2 server connection against floods: PING policy and rate windows.

Nothing here reads a clock: callers pass ``now`` (seconds, monotonic). The asyncio shell
(:mod:`kitex_grpc.transport.h2.server_conn`) feeds them the events the core reports and answers a
violation with GOAWAY ENHANCE_YOUR_CALM (RFC 9113 §5.4.1, error code 0xb).

- :class:`PingPolicy`: grpc-go's keepalive enforcement (``internal/transport/http2_server.go``
  ``handlePing``; Kitex's nphttp2 keeps it): a PING that comes sooner than ``min_time`` after the
  previous one is a strike (sooner than 2 h while no stream is open, unless
  ``permit_without_stream``); more than :data:`MAX_PING_STRIKES` strikes end the connection with the
  debug data ``too_many_pings``. As grpc-go, it forgives the strikes when the server has written
  HEADERS or DATA since the previous PING: a client's BDP probe follows the data it received, however
  often (grpc-go's client sends one per window of data on a long stream). A stream opened since the
  previous PING forgives them too (the server answers every stream, even if it has not yet).
- :class:`RateWindow`: a token bucket (``burst`` events at once, refilled at ``rate`` per second)
  for SETTINGS frames, and for RST_STREAM frames from the client (rapid reset, CVE-2023-44487)
  together with the streams we refuse over MAX_CONCURRENT_STREAMS (a client that read our SETTINGS
  is never refused: one that keeps opening streams past the limit floods us the same way).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PING_MIN_TIME",
    "MAX_PING_STRIKES",
    "NO_STREAM_PING_TIME",
    "TOO_MANY_PINGS",
    "FloodGuard",
    "FloodLimits",
    "PingEnforcement",
    "PingPolicy",
    "RateWindow",
]

# grpc-go keepalive.EnforcementPolicy defaults (keepalive/keepalive.go, internal/transport/defaults.go).
DEFAULT_PING_MIN_TIME = 300.0  # MinTime: 5 min
NO_STREAM_PING_TIME = 2 * 60 * 60.0  # defaultPingTimeout: what an idle connection may ping at
MAX_PING_STRIKES = 2  # maxPingStrikes: the third strike ends the connection
TOO_MANY_PINGS = b"too_many_pings"  # GOAWAY debug data, as grpc-go and gRPC C-core send it


class PingPolicy:
    """grpc-go's server-side PING enforcement for one connection (see the module docstring)."""

    __slots__ = ("_last_ping", "_last_writes", "_strikes", "min_time", "permit_without_stream")

    def __init__(self, min_time: float = DEFAULT_PING_MIN_TIME, permit_without_stream: bool = False) -> None:
        if min_time < 0:
            raise ValueError("min_time must not be negative")
        self.min_time = min_time
        self.permit_without_stream = permit_without_stream
        self._last_ping: float | None = None
        self._last_writes = 0
        self._strikes = 0

    @property
    def strikes(self) -> int:
        return self._strikes

    def ping_received(self, now: float, open_streams: int, writes: int) -> bool:
        """Account one PING (not an ACK); returns True when the client pinged too often.

        ``writes`` grows with every HEADERS and DATA the server writes and every stream the client
        opens (the core passes their sum); any change forgives the strikes.
        """
        last, self._last_ping = self._last_ping, now
        if writes != self._last_writes:
            # The server wrote HEADERS or DATA since the previous PING: grpc-go's resetPingStrikes.
            self._last_writes = writes
            self._strikes = 0
            return False
        if last is None:
            return False
        if open_streams < 1 and not self.permit_without_stream:
            allowed = NO_STREAM_PING_TIME
        else:
            allowed = self.min_time
        if now - last < allowed:
            self._strikes += 1
        return self._strikes > MAX_PING_STRIKES


class RateWindow:
    """A token bucket: up to ``burst`` events at once, refilled at ``rate`` per second.

    ``rate == 0`` turns the window off (every event is allowed).
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must not be negative and burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None

    def allow(self, now: float, n: int = 1) -> bool:
        """Take ``n`` events at time ``now``; False when the bucket ran dry (the peer floods)."""
        if not self.rate:
            return True
        stamp, self._stamp = self._stamp, now
        if stamp is not None and now > stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - stamp) * self.rate)
        self._tokens -= n
        return self._tokens >= 0


# Defaults of :class:`FloodLimits`, chosen against grpc-go and nginx (see the README, "Limits and
# defaults"). A client sends one SETTINGS frame to open the connection and a handful after (grpc-go's
# BDP estimator announces a larger window a few times); it resets a stream when a call is cancelled
# or its deadline passes. Rapid reset (CVE-2023-44487) opens and resets streams as fast as it can:
# tens of thousands a second.
DEFAULT_SETTINGS_RATE = 10.0
DEFAULT_SETTINGS_BURST = 100
DEFAULT_RESET_RATE = 500.0
DEFAULT_RESET_BURST = 1000
DEFAULT_MAX_CONTROL_REPLIES = 50  # grpc-go maxQueuedTransportResponseFrames (controlbuf.go)


@dataclass(frozen=True, kw_only=True, slots=True)
class FloodLimits:
    """Per-connection flood limits of an HTTP/2 server (``server.with_grpc_flood_limits``).

    ``settings_rate`` / ``settings_burst``: SETTINGS frames from the client, per second and at once;
    ``reset_rate`` / ``reset_burst``: RST_STREAM frames from the client that cancel a call. Beyond
    either the connection ends with GOAWAY ENHANCE_YOUR_CALM. A rate of 0 turns that limit off.
    ``max_control_replies``: while the client does not read (the socket's write buffer is over its
    high-water mark), at most this many control frames (PING and SETTINGS ACKs, refusals) are
    answered before the server stops reading from it, until it reads again (grpc-go's throttle).
    """

    settings_rate: float = DEFAULT_SETTINGS_RATE
    settings_burst: int = DEFAULT_SETTINGS_BURST
    reset_rate: float = DEFAULT_RESET_RATE
    reset_burst: int = DEFAULT_RESET_BURST
    max_control_replies: int = DEFAULT_MAX_CONTROL_REPLIES

    def __post_init__(self) -> None:
        if self.settings_rate < 0 or self.reset_rate < 0:
            raise ValueError("rates must not be negative")
        if self.settings_burst < 1 or self.reset_burst < 1 or self.max_control_replies < 1:
            raise ValueError("bursts and max_control_replies must be at least 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class PingEnforcement:
    """grpc-go's ``keepalive.EnforcementPolicy`` (Kitex ``WithGRPCKeepaliveEnforcementPolicy``): the
    shortest interval between a client's PINGs, and whether it may ping with no stream open."""

    min_time: float = DEFAULT_PING_MIN_TIME
    permit_without_stream: bool = False

    def __post_init__(self) -> None:
        if self.min_time < 0:
            raise ValueError("min_time must not be negative")


class FloodGuard:
    """The flood checks of one server connection, consulted by the core frame by frame
    (:meth:`kitex_grpc.protocol.h2_server.GrpcServerConnection.set_flood_guard`): each returns ``None``
    or the GOAWAY debug data that ends the connection. Checking as each frame is parsed stops a
    flood within the read that carries it, before h2 answered thousands of PINGs.

    ``clock`` (seconds, monotonic) is read only for PING, SETTINGS and RST_STREAM frames.
    """

    __slots__ = ("_clock", "_pings", "_resets", "_settings")

    def __init__(self, ping: PingEnforcement, flood: FloodLimits, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._pings = PingPolicy(ping.min_time, ping.permit_without_stream)
        self._settings = RateWindow(flood.settings_rate, flood.settings_burst)
        self._resets = RateWindow(flood.reset_rate, flood.reset_burst)

    def ping(self, open_streams: int, writes: int) -> bytes | None:
        if self._pings.ping_received(self._clock(), open_streams, writes):
            return TOO_MANY_PINGS
        return None

    def settings(self) -> bytes | None:
        return None if self._settings.allow(self._clock()) else b"too_many_settings"

    def reset(self) -> bytes | None:
        return None if self._resets.allow(self._clock()) else b"too_many_resets"
