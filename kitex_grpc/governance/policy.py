"""Retry policies as plain data (Kitex ``pkg/retry/policy.go``): a config centre can build and swap them.

Times are seconds. Limits and defaults are Kitex's (KITEX-WIRE.md §4.3):

- :class:`FailurePolicy`: retry after a failure; ``max_retry_times`` 2 (0..5); only timeouts are
  retried unless :class:`ShouldResultRetry` says otherwise; the failed node is avoided unless
  ``retry_same_node``.
- :class:`BackupPolicy`: a hedged request after ``retry_delay`` (required, > 0; about your TP99);
  ``max_retry_times`` 1 (0..2); the first success wins and the others are cancelled.
- :class:`StopPolicy`: ``max_duration`` (0 = no cap), chain stop (no retry when the request being
  served was itself a retry, unless ``disable_chain_stop``), ``ddl_stop``, and ``cb_error_rate``:
  the retry budget. Retries count as failures in a 10 s window per ``from/to/method`` and stop once
  they reach that share of traffic (needs >= 10 samples; valid range (0, 0.3], else 0.1).
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

DEFAULT_CB_ERROR_RATE = 0.1


class BackOffType(enum.Enum):
    NONE = "none"
    FIXED = "fixed"
    RANDOM = "random"


@dataclasses.dataclass(frozen=True, slots=True)
class BackOffPolicy:
    """Wait between failure retries (Kitex ``BackOffPolicy``): none, fixed, or uniform random."""

    type: BackOffType = BackOffType.NONE
    fixed: float = 0.0
    min: float = 0.0
    max: float = 0.0

    def __post_init__(self) -> None:
        if self.type is BackOffType.FIXED and self.fixed <= 0:
            raise ValueError("BackOffPolicy: a fixed back-off needs fixed > 0")
        if self.type is BackOffType.RANDOM and not 0 <= self.min < self.max:
            raise ValueError("BackOffPolicy: a random back-off needs 0 <= min < max")

    @classmethod
    def fixed_delay(cls, seconds: float) -> BackOffPolicy:
        return cls(BackOffType.FIXED, fixed=seconds)

    @classmethod
    def random_delay(cls, low: float, high: float) -> BackOffPolicy:
        return cls(BackOffType.RANDOM, min=low, max=high)

    def delay(self, rng: random.Random) -> float:
        if self.type is BackOffType.FIXED:
            return self.fixed
        if self.type is BackOffType.RANDOM:
            return rng.uniform(self.min, self.max)
        return 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class StopPolicy:
    """When to stop retrying (Kitex ``StopPolicy``)."""

    max_retry_times: int = 2
    max_duration: float = 0.0
    disable_chain_stop: bool = False
    ddl_stop: bool = False
    cb_error_rate: float = DEFAULT_CB_ERROR_RATE

    def __post_init__(self) -> None:
        if self.max_retry_times < 0:
            raise ValueError("StopPolicy: max_retry_times must be >= 0")
        if self.max_duration < 0:
            raise ValueError("StopPolicy: max_duration must be >= 0")
        if not 0 < self.cb_error_rate <= 0.3:
            # Kitex resets an out-of-range rate to the default instead of failing
            object.__setattr__(self, "cb_error_rate", DEFAULT_CB_ERROR_RATE)


ErrorPredicate = Callable[[BaseException, "RPCInfo"], bool]
ResultPredicate = Callable[[Any, "RPCInfo"], bool]


@dataclasses.dataclass(frozen=True, slots=True)
class ShouldResultRetry:
    """Which outcomes are retried (Kitex ``ShouldResultRetry``): an error predicate, a reply
    predicate, and whether timeouts stop being retried."""

    error_retry: ErrorPredicate | None = None
    resp_retry: ResultPredicate | None = None
    not_retry_for_timeout: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class FailurePolicy:
    """Retry after a failed attempt (Kitex ``FailurePolicy``)."""

    stop_policy: StopPolicy = StopPolicy()
    back_off: BackOffPolicy = BackOffPolicy()
    retry_same_node: bool = False
    should_result_retry: ShouldResultRetry | None = None

    def __post_init__(self) -> None:
        if self.stop_policy.max_retry_times > 5:
            raise ValueError("FailurePolicy: max_retry_times must be in 0..5")


@dataclasses.dataclass(frozen=True, slots=True)
class BackupPolicy:
    """Send a hedged copy of a slow call after ``retry_delay`` seconds (Kitex ``BackupPolicy``)."""

    retry_delay: float
    stop_policy: StopPolicy = StopPolicy(max_retry_times=1)
    retry_same_node: bool = False

    def __post_init__(self) -> None:
        if not self.retry_delay > 0:
            raise ValueError("BackupPolicy: retry_delay must be > 0 seconds (Kitex requires RetryDelayMS)")
        if self.stop_policy.max_retry_times > 2:
            raise ValueError("BackupPolicy: max_retry_times must be in 0..2")


RetryPolicy = FailurePolicy | BackupPolicy
