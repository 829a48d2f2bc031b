"""Per-call options (Kitex ``client/callopt``): passed after the request, they override the client's.

::

    await cli.Unary(req, callopt.with_rpc_timeout(0.5), callopt.with_metadata("x-user", "42"))
"""

from __future__ import annotations

from collections.abc import Callable

from kitex_grpc.address import parse_address
from kitex_grpc.options._base import check_duration
from kitex_grpc.options.client import SUPPORTED_COMPRESSION

__all__ = [
    "CallOption",
    "CallOptions",
    "with_compression",
    "with_connect_timeout",
    "with_fallback",
    "with_grpc_header",
    "with_grpc_trailer",
    "with_host_port",
    "with_metadata",
    "with_retry_policy",
    "with_rpc_timeout",
    "with_tag",
]

_UNSET: float = -1.0


class CallOptions:
    """The per-call settings after every :class:`CallOption` of one call was applied."""

    __slots__ = (
        "compression",
        "connect_timeout",
        "fallback",
        "grpc_header",
        "grpc_trailer",
        "host_port",
        "metadata",
        "retry_policy",
        "rpc_timeout",
        "tags",
    )

    def __init__(self) -> None:
        self.rpc_timeout: float | None = _UNSET  # _UNSET: keep the client's
        self.connect_timeout: float | None = None
        self.host_port: str | None = None
        self.tags: dict[str, str] | None = None
        self.metadata: list[tuple[str, str | bytes]] | None = None
        self.compression: str | None = None
        self.retry_policy: object | None = None
        self.fallback: object | None = None
        self.grpc_header: list[tuple[str, str | bytes]] | None = None
        self.grpc_trailer: list[tuple[str, str | bytes]] | None = None

    @property
    def rpc_timeout_set(self) -> bool:
        return self.rpc_timeout != _UNSET


class CallOption:
    """One per-call option; made by the ``with_*`` functions of this module."""

    __slots__ = ("apply", "name", "value")

    def __init__(self, name: str, value: object, apply: Callable[[CallOptions], None]) -> None:
        self.name = name
        self.value = value
        self.apply = apply

    def __repr__(self) -> str:
        return f"callopt.{self.name}({self.value!r})"


def apply_all(options: tuple[CallOption, ...]) -> CallOptions:
    result = CallOptions()
    for option in options:
        if not isinstance(option, CallOption):
            raise TypeError(f"expected a call option from kitex_grpc.callopt, got {option!r}")
        option.apply(result)
    return result


def with_rpc_timeout(seconds: float) -> CallOption:
    """Time limit for this call (0 = none); for a stream it bounds the whole stream."""
    check_duration("callopt.with_rpc_timeout", seconds)
    value = float(seconds) or None

    def apply(o: CallOptions) -> None:
        o.rpc_timeout = value

    return CallOption("with_rpc_timeout", seconds, apply)


def with_connect_timeout(seconds: float) -> CallOption:
    """Time limit for connecting, for this call."""
    check_duration("callopt.with_connect_timeout", seconds, allow_zero=False)
    value = float(seconds)

    def apply(o: CallOptions) -> None:
        o.connect_timeout = value

    return CallOption("with_connect_timeout", seconds, apply)


def with_host_port(address: str) -> CallOption:
    """Send this call to ``host:port``, bypassing discovery and load balancing."""
    parse_address("callopt.with_host_port", address)

    def apply(o: CallOptions) -> None:
        o.host_port = address

    return CallOption("with_host_port", address, apply)


def with_tag(key: str, value: str) -> CallOption:
    """Tag this call's callee endpoint (visible as ``ri.callee.tags``)."""
    if not key:
        raise ValueError("callopt.with_tag: key must be non-empty")

    def apply(o: CallOptions) -> None:
        if o.tags is None:
            o.tags = {}
        o.tags[key] = value

    return CallOption("with_tag", (key, value), apply)


def with_metadata(key: str, value: str | bytes) -> CallOption:
    """Send metadata ``key: value`` with this call (keys ending in ``-bin`` carry bytes)."""
    if not key or key != key.lower() or key.startswith(":"):
        raise ValueError(
            f"callopt.with_metadata: key must be lower-case and not a pseudo-header, got {key!r}"
        )
    if key.endswith("-bin") != isinstance(value, bytes):
        raise TypeError(
            f"callopt.with_metadata: {key!r} needs a {'bytes' if key.endswith('-bin') else 'str'} value"
        )

    def apply(o: CallOptions) -> None:
        if o.metadata is None:
            o.metadata = []
        o.metadata.append((key, value))

    return CallOption("with_metadata", (key, value), apply)


def with_compression(name: str) -> CallOption:
    """Compress this call's requests with ``name`` (``"gzip"``)."""
    if name not in SUPPORTED_COMPRESSION:
        raise ValueError(f"callopt.with_compression: unsupported compressor {name!r}")

    def apply(o: CallOptions) -> None:
        o.compression = name

    return CallOption("with_compression", name, apply)


def with_grpc_header(md: list[tuple[str, str | bytes]]) -> CallOption:
    """Fill ``md`` with the call's response headers (Kitex ``nphttp2.GRPCHeader``, grpc-go ``grpc.Header``).

    gRPC transports; on success and on failure; a stream fills it when its headers arrive. The same
    pairs are in ``ri.response_headers``.
    """
    if not isinstance(md, list):
        raise TypeError(f"callopt.with_grpc_header: expected a list to fill, got {type(md).__name__}")

    def apply(o: CallOptions) -> None:
        o.grpc_header = md

    return CallOption("with_grpc_header", md, apply)


def with_grpc_trailer(md: list[tuple[str, str | bytes]]) -> CallOption:
    """Fill ``md`` with the response trailers (Kitex ``nphttp2.GRPCTrailer``, grpc-go ``grpc.Trailer``).

    gRPC transports; on success and on failure, once the call ended. The same pairs are in
    ``ri.response_trailers``.
    """
    if not isinstance(md, list):
        raise TypeError(f"callopt.with_grpc_trailer: expected a list to fill, got {type(md).__name__}")

    def apply(o: CallOptions) -> None:
        o.grpc_trailer = md

    return CallOption("with_grpc_trailer", md, apply)


def with_retry_policy(policy: object) -> CallOption:
    """Use this retry policy (a ``FailurePolicy`` or ``BackupPolicy``) for this call only (Kitex
    ``callopt.WithRetryPolicy``); it wins over the client's and the method's policies."""
    from kitex_grpc.governance.policy import BackupPolicy, FailurePolicy

    if not isinstance(policy, FailurePolicy | BackupPolicy):
        raise TypeError(
            f"callopt.with_retry_policy: expected a FailurePolicy or BackupPolicy, got {policy!r}"
        )

    def apply(o: CallOptions) -> None:
        o.retry_policy = policy

    return CallOption("with_retry_policy", policy, apply)


def with_fallback(policy: object) -> CallOption:
    """Use this :class:`~kitex_grpc.governance.FallbackPolicy` for this call (``callopt.WithFallback``)."""
    from kitex_grpc.governance.fallback import FallbackPolicy

    if not isinstance(policy, FallbackPolicy):
        raise TypeError(f"callopt.with_fallback: expected a FallbackPolicy, got {policy!r}")

    def apply(o: CallOptions) -> None:
        o.fallback = policy

    return CallOption("with_fallback", policy, apply)
