"""The transports a client or server can speak (Kitex ``transport/keys.go``, by name, not by value)."""

from __future__ import annotations

import enum


class TransportProtocol(enum.Enum):
    """Which wire protocol a client uses, or a server serves.

    - ``GRPC``: gRPC over HTTP/2 through grpcio's C core (the default).
    - ``GRPC_H2``: gRPC over HTTP/2, pure Python on asyncio and ``h2``.
    - ``TTHEADER``: Kitex TTHeader followed by a strict-binary Thrift (or Kitex Protobuf) payload.
    - ``TTHEADER_FRAMED``: TTHeader, then a 4-byte frame length, then the payload.
    - ``FRAMED``: a 4-byte frame length, then a strict-binary Thrift payload (Kitex's Thrift default).
    - ``TTHEADER_STREAMING``: TTHeader Streaming ("ttstream", Kitex ``transport.TTHeaderStreaming``):
      Thrift streams multiplexed over TTHeader frames; a client sends its unary ping-pong methods over
      TTHeader, as a Kitex ``-streamx`` client does. A server serves it on its TTHeader port.
    """

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is Python code

    GRPC = "grpc"
    GRPC_H2 = "grpc_h2"
    TTHEADER = "ttheader"
    TTHEADER_FRAMED = "ttheader_framed"
    FRAMED = "framed"
    TTHEADER_STREAMING = "ttheader_streaming"

    @property
    def is_grpc(self) -> bool:
        return self in (TransportProtocol.GRPC, TransportProtocol.GRPC_H2)

    @classmethod
    def parse(cls, value: TransportProtocol | str) -> TransportProtocol:
        """Accept a member or its name/value in any case; raise ``ValueError`` naming the choices."""
        if isinstance(value, TransportProtocol):
            return value
        key = str(value).strip().lower()
        for member in cls:
            if key in (member.value, member.name.lower()):
                return member
        choices = ", ".join(m.name for m in cls)
        raise ValueError(f"unknown transport protocol {value!r}; choose one of {choices}")
