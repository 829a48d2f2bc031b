"""The one home of h2 internals (this package, the h2 fence): the HTTP/2 connection the gRPC cores
drive, gated on h2's version.

The cores (:mod:`~kitex_grpc.protocol.h2_core` and its two roles) use only h2's public API; every
override of h2's private methods and every read or write of its private names lives here:
``connection`` (the connection classes) and ``frame_buffer`` (the lean DATA path).

Tested h2 versions: 4.4.0 (the lower bound of pyproject.toml, which the lowest-direct CI venv runs) and
4.4.1 (uv.lock), i.e. ``4.4 <= h2 < 5`` (:data:`TESTED_H2`). Inside that range the cores get
:class:`PatchedH2Connection`: h2's connection with a graceful GOAWAY, per-stream refusals, a flood
guard checked as frames are parsed, and lean send and receive paths, all by overriding h2's private
handlers. Outside it (checked once at import, against ``h2.__version__``) they get
:class:`GrpcH2Connection`, a plain subclass through public API only, and the choice is logged once as a
warning. That fallback keeps what correctness needs, with these differences, each safe but coarser:

- a GOAWAY(NO_ERROR) received closes h2's state machine as h2 does: calls in flight end with the
  connection (UNAVAILABLE) instead of draining;
- a header block over our MAX_HEADER_LIST_SIZE, a request over MAX_CONCURRENT_STREAMS and a
  malformed header block (RFC 9113 §8.1.1) fail the connection (h2's own errors) instead of that
  stream alone;
- the server's flood guard (:class:`~kitex_grpc.protocol.h2_limits.FloodGuard`) counts PING,
  SETTINGS and RST_STREAM from h2's events after each read instead of while parsing it;
- frames are sent and parsed by h2's own code paths (slower, same bytes on the wire).
"""

from __future__ import annotations

import logging
import re

import h2

from kitex_grpc.protocol.h2_patched.connection import GrpcH2Connection, PatchedH2Connection

__all__ = ["H2_CONNECTION_CLASS", "TESTED_H2", "GrpcH2Connection", "PatchedH2Connection", "connection_class"]

# The h2 versions the overrides were tested on: (lowest, first excluded) as (major, minor).
TESTED_H2: tuple[tuple[int, int], tuple[int, int]] = ((4, 4), (5, 0))

_log = logging.getLogger("kitex_grpc.protocol.h2")
_warned = False


def _tested(version: str) -> bool:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return False
    found = (int(match[1]), int(match[2]))
    return TESTED_H2[0] <= found < TESTED_H2[1]


def connection_class(version: str | None = None) -> type[GrpcH2Connection]:
    """The connection class for h2 ``version`` (default: the installed ``h2.__version__``):
    :class:`PatchedH2Connection` inside :data:`TESTED_H2`, else :class:`GrpcH2Connection`, said once
    in the log (logger ``kitex_grpc.protocol.h2``, WARNING)."""
    global _warned
    found = h2.__version__ if version is None else version
    if _tested(found):
        return PatchedH2Connection
    if not _warned:
        _warned = True
        low, high = TESTED_H2
        _log.warning(
            "h2 %s is outside the versions kitex_grpc's HTTP/2 overrides were tested on"
            " (%d.%d <= h2 < %d.%d): using plain h2 (slower; a GOAWAY received, and oversized, excess or"
            " malformed request headers, end the whole connection)",
            found,
            *low,
            *high,
        )
    return GrpcH2Connection


H2_CONNECTION_CLASS: type[GrpcH2Connection] = connection_class()
"""The class the cores instantiate, chosen at import from the installed h2."""
