"""gRPC status codes, spelled without importing grpcio.

The numbers are the gRPC wire values (grpc/doc/statuscodes.md). Kitex's gRPC server also sends two
non-standard values (KITEX-WIRE.md §3, ``nphttp2/codes.go``): 1 for an unknown method and 20 for an
unknown service; :func:`StatusCode.from_wire` keeps such numbers instead of failing on them.
"""

from __future__ import annotations

import enum


class StatusCode(enum.IntEnum):
    """A gRPC status code."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16
    # Kitex's "unknown service" (TransError UnknownService = 20), sent as grpc-status 20.
    KITEX_UNKNOWN_SERVICE = 20

    @classmethod
    def from_wire(cls, value: int) -> StatusCode:
        """Map a wire number to a code; numbers gRPC does not define become UNKNOWN (gRPC spec)."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN
