"""Client degradation (kitex-contrib config-etcd ``pkg/degradation``): reject a share of calls.

While enabled, an ACL rule rejects ``percentage`` % of calls at random with
``"rejected by client degradation config"`` (an :class:`~kitex_grpc.errors.ACLError`, Kitex ``ErrACL``).
Disabled by default. :meth:`Degradation.update` swaps the frozen config the rule reads per call.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

REJECTED = "rejected by client degradation config"


@dataclasses.dataclass(frozen=True, slots=True)
class DegradationConfig:
    """config-etcd's ``degradation.Config``: ``{"enable": bool, "percentage": 0..100}``."""

    enable: bool = False
    percentage: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.percentage, bool) or not isinstance(self.percentage, int):
            raise TypeError(f"DegradationConfig: percentage must be an int, got {self.percentage!r}")
        if not 0 <= self.percentage <= 100:
            raise ValueError(f"DegradationConfig: percentage must be in 0..100, got {self.percentage!r}")


class Degradation:
    """Holds the config in force; :meth:`rule` is the ACL reject function."""

    __slots__ = ("_rng", "config")

    def __init__(
        self, config: DegradationConfig = DegradationConfig(), rng: random.Random | None = None
    ) -> None:
        self.config = config
        self._rng = rng or random.Random()

    def update(self, config: DegradationConfig) -> None:
        self.config = config

    def rule(self, ri: RPCInfo, request: Any) -> str | None:
        config = self.config
        if config.enable and self._rng.randrange(100) < config.percentage:
            return REJECTED
        return None
