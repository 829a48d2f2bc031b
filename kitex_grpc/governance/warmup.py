"""Client warm-up (Kitex ``pkg/warmup``): resolve, and optionally connect, before the first call."""

from __future__ import annotations

import dataclasses
import logging

_log = logging.getLogger("kitex_grpc.warmup")

ERROR_HANDLING = ("log", "fail_fast", "ignore")


@dataclasses.dataclass(frozen=True, slots=True)
class WarmUpOption:
    """Kitex ``warmup.ClientOption``.

    - ``dests``: extra destination service names to resolve (the client's own always is);
    - ``connect``: also open connections to every resolved instance (Kitex ``PoolOption``);
    - ``conn_num``: how many connections per instance (Kitex ``PoolOption.ConnNum``) for pooled
      transports (TTHeader); 0 keeps the pool's ``min_idle_per_address`` (at least one).
      Multiplexed transports (gRPC) open one connection whatever the number;
    - ``error_handling``: ``"log"`` (Kitex ``ErrorLog``, default), ``"fail_fast"`` (the warm-up
      raises) or ``"ignore"``.
    """

    dests: tuple[str, ...] = ()
    connect: bool = True
    error_handling: str = "log"
    conn_num: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.conn_num, bool) or not isinstance(self.conn_num, int) or self.conn_num < 0:
            raise ValueError(f"WarmUpOption: conn_num must be an integer >= 0, got {self.conn_num!r}")
        if self.error_handling not in ERROR_HANDLING:
            raise ValueError(f"WarmUpOption: error_handling must be one of {ERROR_HANDLING}")

    def handle(self, error: BaseException) -> None:
        """Apply the error handling to a warm-up failure."""
        if self.error_handling == "fail_fast":
            raise error
        if self.error_handling == "log":
            _log.warning("kitex warm-up failed: %s", error)
