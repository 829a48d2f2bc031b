"""Per-method RPC and connect timeouts (Kitex ``rpcinfo.TimeoutProvider``, ``pkg/rpctimeout``).

A :data:`TimeoutProvider` is a per-call function of the RPCInfo that returns :class:`Timeouts` (or
``None``: keep what the options say). :class:`MethodTimeouts` is the table a config centre sets:
the exact method first, then ``"*"``, then its default (Kitex ``rpctimeout.Container``).

Precedence, as in Kitex ``client/client.go initRPCInfo``: a call option wins, then a timeout set in
code with ``with_rpc_timeout`` / ``with_connect_timeout`` (it locks that field), then the provider.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

WILDCARD = "*"
GO_DEFAULT_RPC_TIMEOUT = 1.0
"""config-etcd's implicit RPC timeout when the key or the method is absent (Kitex ``rpctimeout``)."""
GO_DEFAULT_CONNECT_TIMEOUT = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; ``rpc_timeout`` ``None`` (or 0 in config) is no RPC timeout."""

    rpc_timeout: float | None = None
    connect_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("rpc_timeout", "connect_timeout"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"Timeouts: {name} must be a finite number of seconds, got {value!r}")
            if value < 0:
                raise ValueError(f"Timeouts: {name} must be >= 0, got {value!r}")


TimeoutProvider = Callable[["RPCInfo"], "Timeouts | None"]


@dataclasses.dataclass(frozen=True, slots=True)
class MethodTimeouts:
    """A frozen per-method table: ``methods[name]``, else ``methods["*"]``, else ``default``."""

    methods: Mapping[str, Timeouts] = dataclasses.field(default_factory=dict)
    default: Timeouts | None = None

    def lookup(self, method: str) -> Timeouts | None:
        found = self.methods.get(method)
        if found is None:
            found = self.methods.get(WILDCARD, self.default)
        return found

    def __call__(self, ri: RPCInfo) -> Timeouts | None:
        return self.lookup(ri.method.name)
