"""Settings and limits of the TTHeader/Framed transports: the long-connection pool's limits, and
the largest frame a client or server accepts.

The transport owns its configuration (as :mod:`kitex_grpc.transport.ttstream.config` does); the
``client.with_long_connection`` option builds it, and :mod:`kitex_grpc.options.client` re-exports it.
"""

from __future__ import annotations

import dataclasses

from kitex_grpc.protocol.ttheader import MAX_FRAME_SIZE, MAX_HEADER_SIZE

__all__ = ["DEFAULT_IDLE_CONFIG", "IdleConfig", "frame_limit"]


@dataclasses.dataclass(frozen=True, slots=True)
class IdleConfig:
    """The TTHeader/Framed long-connection pool (Kitex ``connpool.IdleConfig``, ``pkg/connpool/config.go``).

    Defaults are Kitex's when no ``WithLongConnection`` is given: 10 idle connections per address,
    100 in all, closed after 60 s idle; ``min_idle_per_address`` (at most 5) are kept past the idle
    timeout.
    """

    min_idle_per_address: int = 0
    max_idle_per_address: int = 10
    max_idle_global: int = 100
    max_idle_timeout: float = 60.0


DEFAULT_IDLE_CONFIG = IdleConfig()


def frame_limit(max_message_size: int) -> int:
    """The largest frame accepted: a message of the configured size plus a full header and envelope."""
    return min(MAX_FRAME_SIZE, max_message_size + MAX_HEADER_SIZE + 0x10000)
