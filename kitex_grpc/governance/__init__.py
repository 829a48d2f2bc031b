"""Governance: retry and backup requests, circuit breakers, limits, ACL, fallback and warm-up.

Each is a policy (plain data) and a middleware factory; an unconfigured feature adds nothing to the
chain.
"""

from __future__ import annotations

from kitex_grpc.governance.acl import RejectFunc, acl_middleware
from kitex_grpc.governance.circuitbreak import Breaker, CBConfig, CBSuite, State, rpcinfo_to_key
from kitex_grpc.governance.fallback import (
    FallbackPolicy,
    error_fallback,
    timeout_and_cb_fallback,
)
from kitex_grpc.governance.limiter import LimitOption, LimitStats, ServerLimiter, TokenBucket
from kitex_grpc.governance.policy import (
    BackOffPolicy,
    BackOffType,
    BackupPolicy,
    FailurePolicy,
    RetryPolicy,
    ShouldResultRetry,
    StopPolicy,
)
from kitex_grpc.governance.retry import RetryContainer, is_retry_request
from kitex_grpc.governance.warmup import WarmUpOption

__all__ = [
    "BackOffPolicy",
    "BackOffType",
    "BackupPolicy",
    "Breaker",
    "CBConfig",
    "CBSuite",
    "FailurePolicy",
    "FallbackPolicy",
    "LimitOption",
    "LimitStats",
    "RejectFunc",
    "RetryContainer",
    "RetryPolicy",
    "ServerLimiter",
    "ShouldResultRetry",
    "State",
    "StopPolicy",
    "TokenBucket",
    "WarmUpOption",
    "acl_middleware",
    "error_fallback",
    "is_retry_request",
    "rpcinfo_to_key",
    "timeout_and_cb_fallback",
]
