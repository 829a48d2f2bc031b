"""Per-call information every middleware sees (Kitex ``pkg/rpcinfo``).

An :class:`RPCInfo` is built once per call (client) or per received request (server) and travels
through the chain. Handlers reach theirs with :func:`current`.
"""

from __future__ import annotations

import contextvars
import time
from typing import TYPE_CHECKING, Any, Final

from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo

Metadata = list[tuple[str, str | bytes]]

AVOID_KEY: Final = "kitex.avoid_addresses"
"""``RPCInfo.extra`` key: addresses a retry attempt should avoid when another instance is available
(written by governance's retry, read by discovery's picker; it lives here so neither imports the other)."""


class EndpointInfo:
    """One side of a call: its service name, the method, its address and tags."""

    __slots__ = ("address", "method", "service_name", "tags")

    def __init__(
        self, service_name: str = "", method: str = "", address: str = "", tags: dict[str, str] | None = None
    ) -> None:
        self.service_name = service_name
        self.method = method
        self.address = address
        self.tags: dict[str, str] = tags if tags is not None else {}

    def __repr__(self) -> str:
        return (
            f"EndpointInfo(service={self.service_name!r}, method={self.method!r}, address={self.address!r})"
        )


class RPCConfig:
    """The effective per-call configuration after client options and call options are merged."""

    __slots__ = ("compression", "connect_timeout", "rpc_timeout", "rpc_timeout_set", "transport_protocol")

    def __init__(
        self,
        rpc_timeout: float | None,
        connect_timeout: float,
        transport_protocol: TransportProtocol,
        compression: str | None = None,
        rpc_timeout_set: bool = False,
    ) -> None:
        self.rpc_timeout = rpc_timeout
        self.connect_timeout = connect_timeout
        self.transport_protocol = transport_protocol
        self.compression = compression
        # Kitex sends the RPC timeout over TTHeader only when it was set explicitly (§1.3).
        self.rpc_timeout_set = rpc_timeout_set


class RPCStats:
    """Timing of one call on one side: monotonic start and end, and the error it ended with.

    The end (``end_time``, ``error``) of a client unary call or a served call is recorded only when
    a tracer is configured, for it to read at ``finish`` (see
    :func:`~kitex_grpc.observability.tracer.run_traced`); client streams always record it.
    """

    __slots__ = ("end_time", "error", "recv_messages", "send_messages", "start_time")

    def __init__(self) -> None:
        self.start_time = time.monotonic()
        self.end_time: float | None = None
        self.error: BaseException | None = None
        self.send_messages = 0
        self.recv_messages = 0

    def finish(self, error: BaseException | None = None) -> None:
        if self.end_time is None:
            self.end_time = time.monotonic()
            self.error = error

    @property
    def duration(self) -> float | None:
        return None if self.end_time is None else self.end_time - self.start_time


class RPCInfo:
    """Everything known about one call.

    - ``caller`` / ``callee``: the two sides (service name, method, address, tags).
    - ``service`` / ``method``: the service and method descriptions.
    - ``config``: effective timeouts, transport and compression.
    - ``deadline``: absolute ``time.monotonic()`` deadline, or ``None``.
    - ``metadata``: outgoing metadata on the client, received metadata on the server.
    - ``response_headers`` / ``response_trailers`` (client, gRPC transports): the response headers
      and trailers, apart, on success and on failure; headers as soon as they arrive, trailers at
      the end of the call (``callopt.with_grpc_header`` / ``with_grpc_trailer`` hand in lists to fill).
    - ``response_metadata``: client: both of the above, headers first (the TTHeader transport puts
      the reply's string info here); server: the trailers to send with the status (a handler adds
      them with ``grpc_meta.set_trailer``, which appends here).
    - ``stats``: timing; ``attempt``: 1 for the first try, counting retries and backups.
    """

    __slots__ = (
        "attempt",
        "callee",
        "caller",
        "config",
        "deadline",
        "extra",
        "metadata",
        "method",
        "response_headers",
        "response_metadata",
        "response_trailers",
        "seq_id",
        "service",
        "stats",
    )

    def __init__(
        self,
        caller: EndpointInfo,
        callee: EndpointInfo,
        service: ServiceInfo,
        method: MethodInfo,
        config: RPCConfig,
        metadata: Metadata | None = None,
        deadline: float | None = None,
    ) -> None:
        self.caller = caller
        self.callee = callee
        self.service = service
        self.method = method
        self.config = config
        self.metadata: Metadata = metadata if metadata is not None else []
        self.response_metadata: Metadata = []
        self.response_headers: Metadata = []
        self.response_trailers: Metadata = []
        self.deadline = deadline
        self.stats = RPCStats()
        self.attempt = 1
        self.seq_id = 0
        self.extra: dict[str, Any] = {}

    def time_remaining(self) -> float | None:
        """Seconds until the deadline (never negative), or ``None`` without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def copy_for_attempt(self, attempt: int) -> RPCInfo:
        """A fresh RPCInfo for another attempt of the same call (retries and backup requests)."""
        ri = RPCInfo(
            self.caller,
            EndpointInfo(self.callee.service_name, self.callee.method, "", dict(self.callee.tags)),
            self.service,
            self.method,
            self.config,
            list(self.metadata),
            None,
        )
        ri.attempt = attempt
        ri.extra = dict(self.extra)
        return ri

    def __repr__(self) -> str:
        return (
            f"RPCInfo({self.caller.service_name!r} -> {self.callee.service_name!r}/{self.method.name}"
            f" @ {self.callee.address or '?'})"
        )


def served_rpcinfo(
    callee_service: str,
    peer: str,
    local: str,
    service: ServiceInfo,
    method: MethodInfo,
    config: RPCConfig,
    metadata: Metadata,
    deadline: float | None,
    caller_service: str = "",
    caller_method: str = "",
) -> RPCInfo:
    """The RPCInfo of a received request: the caller known by its address (and by its names when
    the request carries them), the callee by ``callee_service``, the method's name and ``local``
    (one call instead of three constructors)."""
    return RPCInfo(
        EndpointInfo(caller_service, caller_method, peer),
        EndpointInfo(callee_service, method.name, local),
        service,
        method,
        config,
        metadata,
        deadline,
    )


_current: Final[contextvars.ContextVar[RPCInfo | None]] = contextvars.ContextVar(
    "kitex_grpc_rpcinfo", default=None
)
# The deadline of the call being served; outgoing calls made while serving it inherit it.
_inherited_deadline: Final[contextvars.ContextVar[float | None]] = contextvars.ContextVar(
    "kitex_grpc_deadline", default=None
)


def current() -> RPCInfo | None:
    """The RPCInfo of the call the current task is serving, or ``None`` outside a handler."""
    return _current.get()


def set_current(ri: RPCInfo) -> None:
    _current.set(ri)
    if ri.deadline is not None:
        _inherited_deadline.set(ri.deadline)


def inherited_deadline() -> float | None:
    """The deadline an outgoing call inherits from the call being served, if any."""
    return _inherited_deadline.get()


def metadata_value(metadata: Metadata, key: str) -> str | bytes | None:
    """The first value of ``key`` in a metadata list, or ``None``."""
    for k, v in metadata:
        if k == key:
            return v
    return None
