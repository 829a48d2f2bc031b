"""Sans-IO gRPC over HTTP/2: :class:`GrpcClientConnection` and :class:`GrpcServerConnection`, in one import.

The cores live in modules of one job each:

- :mod:`~kitex_grpc.protocol.h2_patched`: the h2 connection they drive, the one package that touches
  h2's internals (gated on the h2 versions it was tested on);
- :mod:`~kitex_grpc.protocol.h2_call_state`: configuration, errors and the per-call state machine;
- :mod:`~kitex_grpc.protocol.h2_core`: the call core both roles share (bytes in and out, flow
  control both ways, PING, GOAWAY);
- :mod:`~kitex_grpc.protocol.h2_client` and :mod:`~kitex_grpc.protocol.h2_server`: the two roles.

Events are :mod:`~kitex_grpc.protocol.h2_events`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from kitex_grpc.protocol.h2_call_state import (
    CLIENT_RECV_TRANSITIONS,
    SERVER_RECV_TRANSITIONS,
    CallInput,
    CallState,
    ConnectionClosedError,
    GrpcConnectionConfig,
    H2ConnectionError,
    StreamClosedError,
    TooManyStreamsError,
)
from kitex_grpc.protocol.h2_client import GrpcClientConnection
from kitex_grpc.protocol.h2_server import GrpcServerConnection

__all__ = [
    "CLIENT_RECV_TRANSITIONS",
    "SERVER_RECV_TRANSITIONS",
    "CallInput",
    "CallState",
    "ConnectionClosedError",
    "GrpcClientConnection",
    "GrpcConnectionConfig",
    "GrpcServerConnection",
    "H2ConnectionError",
    "StreamClosedError",
    "TooManyStreamsError",
]
