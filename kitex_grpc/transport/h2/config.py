"""Defaults of the h2 transport, and the core configuration built from the framework's options.

Limits follow Kitex / grpc-go (KITEX-WIRE.md §3 "Other HTTP/2 defaults"). The receive windows start
elsewhere: Kitex advertises 64 KiB and, unless ``WithGRPCInitialWindowSize`` or
``WithGRPCInitialConnWindowSize`` is set, grows both windows by BDP estimation up to 16 MiB once data
flows (grpc-go's ``bdpEstimator``, which Kitex's nphttp2 keeps, with one sample per second at most).
We estimate the same way (:mod:`kitex_grpc.protocol.h2_bdp`, the same limit and interval, turned off
by the same two options) but start higher: 1 MiB per stream, 16 MiB per connection. With a 64 KiB
stream window a pipelined stream of small messages stalls on every WINDOW_UPDATE round trip
(measured: 4 KiB messages, 64 in flight, ran at 0.71x grpclib's rate, 1.5x with 1 MiB), and at one
sample per second BDP takes seconds to get there. Memory stays bounded by the windows: a reader that
stops holds at most one stream window per stream (16 MiB at most once BDP grew it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kitex_grpc._version import __version__
from kitex_grpc.protocol.h2_bdp import BdpConfig
from kitex_grpc.protocol.h2_call import GrpcConnectionConfig
from kitex_grpc.protocol.h2_limits import FloodLimits, PingEnforcement

if TYPE_CHECKING:
    from kitex_grpc.transport.settings import GrpcSettings

USER_AGENT = f"kitex-grpc/{__version__}"

# What we advertise in SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.9.2 would be 65,535); see above.
DEFAULT_STREAM_WINDOW = 1024 * 1024
DEFAULT_CONNECTION_WINDOW = 16 * 1024 * 1024
# SETTINGS_MAX_FRAME_SIZE we advertise: the largest frame a peer may send us. grpc-go and Kitex
# advertise none (16 KiB, RFC 9113 §6.5.2) and write 16 KiB frames; gRPC C-core (grpcio) advertises
# 4 MiB. Receiving costs per frame (parse, window accounting, one event each), so peers that honour a
# larger value (ours, grpcio) send a 1 MiB message in 4 frames instead of 64. A frame is held whole
# before it is parsed: 256 KiB, the size of one socket read (transport/receive_buffer.py), bounds what
# one connection holds of a partial frame.
MAX_FRAME_SIZE = 256 * 1024
# A writer waits once this many bytes of its stream wait for the peer's window.
SEND_HIGH_WATER = 64 * 1024
# Kitex server keepalive: ping after 2 h, fail after 20 s without an ACK. The client pings only when
# asked to (grpc-go's client default is no keepalive).
SERVER_KEEPALIVE_TIME: float | None = 2 * 60 * 60.0
CLIENT_KEEPALIVE_TIME: float | None = None
KEEPALIVE_TIMEOUT = 20.0
# Server limits (README "Limits and defaults"). MAX_CONCURRENT_STREAMS: grpc-go and Kitex advertise
# no limit, and 20,000 streams a client opens and abandons then cost ~90 MiB here (a task each);
# RFC 9113 §6.5.2 recommends no less than 100, nginx uses 128, Go's net/http2 server 250. 100 keeps
# an abandoned connection to a few MiB and is above any in-flight count one of our clients or the
# benchmarks put on one connection (64); a client queues calls beyond it.
SERVER_MAX_CONCURRENT_STREAMS = 100
# SETTINGS_MAX_HEADER_LIST_SIZE: grpc-go and Kitex say 16 MiB, gRPC C-core (grpcio) rejects request
# metadata over 8 KiB (soft) and 16 KiB (hard). Decoded values are Python objects (a header block of
# 4 KiB naming a 4,000-byte table entry 1,000 times decodes to ~16 MB), so we take C-core's 16 KiB:
# no grpcio client can send more, and a stream's headers hold at most that.
SERVER_MAX_HEADER_LIST_SIZE = 16 * 1024
# Kitex's server read-write timeout (5 s) and max connection idle time (10 min), which the TTHeader
# port applies too (server.with_read_write_timeout / with_max_conn_idle_time set both).
SERVER_HANDSHAKE_TIMEOUT = 5.0
SERVER_IDLE_TIMEOUT = 600.0
_DEFAULT_PING = PingEnforcement()  # grpc-go's enforcement policy: 5 min, none without a stream
_DEFAULT_FLOOD = FloodLimits()
_DEFAULT_BDP = BdpConfig()  # Kitex / grpc-go: windows grow up to 16 MiB; Kitex: one sample per second
CLIENT_MAX_HEADER_LIST_SIZE = 16 * 1024 * 1024  # responses: grpc-go's client default
# Until the server's first SETTINGS arrives, a client does not know MAX_CONCURRENT_STREAMS; the
# dial waits for that frame (as grpc-go does), within the connect timeout.


@dataclass(frozen=True, kw_only=True, slots=True)
class H2Tuning:
    """Transport knobs (constructor arguments of the transports; see :meth:`with_options` for the ones
    the ``with_grpc_*`` options set).

    ``keepalive_time``: seconds between PINGs (``None``: off); ``keepalive_timeout``: how long an
    unanswered PING may stay out before the connection is closed and its calls fail UNAVAILABLE.
    ``max_concurrent_streams``: advertised by a server (``None``: unlimited, as grpc-go); a stream over
    it is refused alone (RST_STREAM REFUSED_STREAM). ``max_header_list_size``: the largest header list
    accepted. Server only: ``handshake_timeout`` (the client preface and SETTINGS must arrive within
    it), ``idle_timeout`` (a connection without a stream for that long is closed), ``ping`` (the
    PING policy) and ``flood`` (SETTINGS and RST_STREAM rates, control replies to a client that does
    not read); ``None`` turns a timeout off. ``bdp``: adaptive receive windows (BDP estimation, see
    :mod:`kitex_grpc.protocol.h2_bdp`); ``None`` keeps ``stream_window`` and ``connection_window``
    static, which setting either window option does (as in Kitex).
    """

    stream_window: int = DEFAULT_STREAM_WINDOW
    connection_window: int = DEFAULT_CONNECTION_WINDOW
    send_high_water: int = SEND_HIGH_WATER
    keepalive_time: float | None = None
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    max_concurrent_streams: int | None = None
    max_header_list_size: int = CLIENT_MAX_HEADER_LIST_SIZE
    handshake_timeout: float | None = None
    idle_timeout: float | None = None
    ping: PingEnforcement = _DEFAULT_PING
    flood: FloodLimits = _DEFAULT_FLOOD
    bdp: BdpConfig | None = _DEFAULT_BDP

    def with_options(self, options: GrpcSettings) -> H2Tuning:
        """These knobs with what the ``with_grpc_*`` options set applied on top (Kitex ``WithGRPC*``):
        stream and connection windows, keepalive time and timeout, max header list size and (server)
        max concurrent streams."""
        changes: dict[str, Any] = {}
        if options.grpc_initial_window_size is not None:
            changes["stream_window"] = options.grpc_initial_window_size
            changes["bdp"] = None  # a static window turns BDP off (Kitex http2_client/server.go)
        if options.grpc_initial_conn_window_size is not None:
            changes["connection_window"] = options.grpc_initial_conn_window_size
            changes["bdp"] = None
        if options.grpc_keepalive_time is not None:
            changes["keepalive_time"] = options.grpc_keepalive_time
        if options.grpc_keepalive_timeout is not None:
            changes["keepalive_timeout"] = options.grpc_keepalive_timeout
        if options.grpc_max_header_list_size is not None:
            changes["max_header_list_size"] = options.grpc_max_header_list_size
        streams = getattr(options, "grpc_max_concurrent_streams", None)
        if streams is not None:
            changes["max_concurrent_streams"] = streams
        # Server options: the TTHeader port's timeouts bound HTTP/2 connections too.
        for name, field in _SERVER_FIELDS:
            value = getattr(options, name, None)
            if value is not None and value != getattr(self, field):
                changes[field] = value
        return dataclasses.replace(self, **changes) if changes else self

    def core_config(self, *, max_message_size: int, scheme: str) -> GrpcConnectionConfig:
        return GrpcConnectionConfig(
            max_message_size=max_message_size,
            initial_window_size=self.stream_window,
            initial_connection_window_size=self.connection_window,
            max_frame_size=MAX_FRAME_SIZE,
            max_header_list_size=self.max_header_list_size,
            max_concurrent_streams=self.max_concurrent_streams,
            scheme=scheme,
            user_agent=USER_AGENT,
            bdp=self.bdp,
            # h2's strict checks of received fields would turn a grpc-message with a trailing space
            # (grpc.aio sends "...: " unencoded) into a connection error (RFC 9113 §8.2.1 calls it
            # malformed, but gRPC peers send it). The core validates what gRPC needs itself.
            validate_inbound_headers=False,
        )


_SERVER_FIELDS = (
    ("read_write_timeout", "handshake_timeout"),
    ("max_conn_idle_time", "idle_timeout"),
    ("grpc_keepalive_enforcement", "ping"),
    ("grpc_flood_limits", "flood"),
)

CLIENT_TUNING = H2Tuning(keepalive_time=CLIENT_KEEPALIVE_TIME)
SERVER_TUNING = H2Tuning(
    keepalive_time=SERVER_KEEPALIVE_TIME,
    handshake_timeout=SERVER_HANDSHAKE_TIMEOUT,
    idle_timeout=SERVER_IDLE_TIMEOUT,
    max_concurrent_streams=SERVER_MAX_CONCURRENT_STREAMS,
    max_header_list_size=SERVER_MAX_HEADER_LIST_SIZE,
)
