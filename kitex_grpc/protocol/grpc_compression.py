"""gRPC message-encoding negotiation, sans-IO: the ``grpc-encoding`` and ``grpc-accept-encoding``
header values (gRPC doc/compression.md).

A peer sends the same ``grpc-accept-encoding`` value on every call (ours: ``identity,deflate,gzip``),
so parsed values are kept in a small bounded cache: the parse costs one dict lookup per call.
"""

from __future__ import annotations

from typing import Final

__all__ = ["parse_accept_encoding", "parse_encoding"]

_CACHE_LIMIT: Final = 64  # distinct header values remembered; more are parsed on every call
_accept_cache: dict[bytes, tuple[str, ...]] = {}


def parse_encoding(value: bytes | None) -> str | None:
    """A ``grpc-encoding`` value: the lower-cased name, ``None`` for absent, empty or identity."""
    if value is None:
        return None
    text = value.decode("ascii", "replace").strip().lower()
    return None if text in ("", "identity") else text


def parse_accept_encoding(value: bytes | None) -> tuple[str, ...]:
    """A ``grpc-accept-encoding`` value: its comma-separated names, lower-cased, in order."""
    if not value:
        return ()
    names = _accept_cache.get(value)
    if names is None:
        names = tuple(
            part.strip().lower() for part in value.decode("ascii", "replace").split(",") if part.strip()
        )
        if len(_accept_cache) < _CACHE_LIMIT:
            _accept_cache[value] = names
    return names
