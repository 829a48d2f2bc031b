"""Settings of the TTHeader Streaming transport (KITEX-WIRE-2.md §11.10-11.12).

Kitex has no flow control on ttstream: each stream's receive queue is unbounded and only TCP pushes
back (``internal/container/pipe.go``). Here each stream buffers at most ``recv_queue_size`` received
messages; while any stream of a connection is that full, the connection is not read, so the sender
is held back by TCP (one slow reader stalls the other streams of its connection, as it would on a
Kitex connection once its socket buffers fill, only sooner and with bounded memory).
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["DEFAULT_TTSTREAM", "TTStreamConfig"]


@dataclasses.dataclass(frozen=True, slots=True)
class TTStreamConfig:
    """TTHeader Streaming knobs, for clients and servers.

    - ``recv_queue_size`` (default 256): messages buffered per stream before the connection stops
      being read (Kitex: unbounded); the frames of the read that filled the queue are kept too (one
      socket read, at most 256 KiB).
    - ``pool_size`` (client, default 1): connections per address, used round-robin, each carrying
      any number of streams (Kitex's mux pool, ``PoolSize`` = GOMAXPROCS; one asyncio loop gains
      nothing from more).
    - ``max_idle_time`` (client, default 60 s, Kitex's ``MaxIdleTimeout``): a connection with no
      stream for this long is closed.
    - ``dial_timeout`` (client, default 1 s): Kitex hard-codes 1 s for ttstream and ignores
      ``WithConnectTimeout`` (§11.11).
    - ``max_streams`` (server, default 10000): streams open at once on one connection. A Header over
      the limit is answered at once with a Trailer carrying a TApplicationException (Kitex has no
      limit).
    """

    recv_queue_size: int = 256
    pool_size: int = 1
    max_idle_time: float = 60.0
    dial_timeout: float = 1.0
    max_streams: int = 10000

    def __post_init__(self) -> None:
        for name in ("recv_queue_size", "pool_size", "max_streams"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TTStreamConfig.{name} must be a positive int, not {value!r}")
        for name in ("max_idle_time", "dial_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"TTStreamConfig.{name} must be a finite number of seconds, not {value!r}")
            if value <= 0:
                raise ValueError(f"TTStreamConfig.{name} must be > 0 seconds, not {value!r}")


DEFAULT_TTSTREAM = TTStreamConfig()
