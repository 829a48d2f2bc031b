"""The JSON of the Kitex config-centre categories (KITEX-WIRE-2.md §15.3), checked field by field.

Each ``parse_*`` takes the decoded JSON of one key and returns what it accepted plus a list of
:class:`Rejection` (method, field, reason). A rejected method entry (or limit field) is left out:
the caller keeps the value in force for it. All times in the JSON are milliseconds; the policies
returned use seconds.

Checks (Kitex's bounds, ``pkg/retry``, ``pkg/circuitbreak``): ``max_retry_times`` 0..5 (failure),
0..2 (backup); ``cb_policy.error_rate`` in (0, 0.3] (Kitex resets an out-of-range rate to 0.1 with a
warning; here the entry is rejected and the previous policy stays, so a typo never changes the retry
budget silently); ``type`` 0 or 1 (2, Kitex HEAD's mixed retry, is not implemented here: rejected);
a fixed back-off needs ``fix_ms`` > 0, a random one ``max_ms`` > ``min_ms`` >= 0; ``retry_delay_ms``
> 0; timeouts >= 0; ``err_rate`` in (0, 1]; ``min_sample`` >= 1; ``percentage`` 0..100; limits >= 0.
Fields Kitex does not know are ignored, as Go's ``encoding/json`` does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from kitex_grpc.governance.circuitbreak import CBConfig
from kitex_grpc.governance.degradation import DegradationConfig
from kitex_grpc.governance.policy import (
    BackOffPolicy,
    BackupPolicy,
    FailurePolicy,
    RetryPolicy,
    StopPolicy,
)
from kitex_grpc.governance.timeouts import Timeouts

RPC_TIMEOUT = "rpc_timeout"
RETRY = "retry"
CIRCUIT_BREAK = "circuit_break"
DEGRADATION = "degradation"
LIMIT = "limit"
CLIENT_CATEGORIES = (RPC_TIMEOUT, RETRY, CIRCUIT_BREAK, DEGRADATION)
SERVER_CATEGORIES = (LIMIT,)

MAX_FAILURE_RETRY = 5
MAX_BACKUP_RETRY = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """One refused value: ``method`` ("" for a whole-key category), the JSON ``field`` path, why."""

    method: str
    field: str
    reason: str


class _FieldError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _obj(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _FieldError(field, f"expected a JSON object, got {type(value).__name__}")
    return value


def _int(value: Any, field: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError(field, f"expected an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise _FieldError(field, f"{value} is out of range ({bound})")
    return value


def _num(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _FieldError(field, f"expected a number, got {value!r}")
    return float(value)


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise _FieldError(field, f"expected true or false, got {value!r}")
    return value


def _methods(value: Any, parse: Any) -> tuple[dict[str, Any], list[Rejection]]:
    if not isinstance(value, dict):
        return {}, [Rejection("", "", f"expected a JSON object keyed by method, got {type(value).__name__}")]
    accepted: dict[str, Any] = {}
    rejected: list[Rejection] = []
    for method, entry in value.items():
        try:
            accepted[method] = parse(entry)
        except _FieldError as bad:
            rejected.append(Rejection(method, bad.field, bad.reason))
    return accepted, rejected


# -- rpc_timeout ------------------------------------------------------------------------------------


def _timeouts(entry: Any) -> Timeouts:
    entry = _obj(entry, "")
    rpc = _int(entry.get("rpc_timeout_ms", 0), "rpc_timeout_ms")
    conn = _int(entry.get("conn_timeout_ms", 0), "conn_timeout_ms")
    # rpc 0: no RPC timeout (Kitex); conn 0: keep the client's connect timeout
    return Timeouts(rpc / 1000 if rpc else None, conn / 1000 if conn else None)


def parse_rpc_timeout(value: Any) -> tuple[dict[str, Timeouts], list[Rejection]]:
    """``{"<method>"|"*": {"rpc_timeout_ms": int, "conn_timeout_ms": int}}``."""
    return _methods(value, _timeouts)


# -- retry ------------------------------------------------------------------------------------------


def _stop(value: Any, field: str, max_retry: int) -> StopPolicy:
    stop = _obj(value, field)
    times = _int(stop.get("max_retry_times", 0), f"{field}.max_retry_times", 0, max_retry)
    duration = _int(stop.get("max_duration_ms", 0), f"{field}.max_duration_ms")
    rate = 0.1
    cb = stop.get("cb_policy")
    if cb is not None:
        rate = _num(_obj(cb, f"{field}.cb_policy").get("error_rate", 0), f"{field}.cb_policy.error_rate")
        if not 0 < rate <= 0.3:
            raise _FieldError(f"{field}.cb_policy.error_rate", f"{rate} is outside (0, 0.3]")
    return StopPolicy(
        max_retry_times=times,
        max_duration=duration / 1000,
        disable_chain_stop=_bool(stop.get("disable_chain_stop", False), f"{field}.disable_chain_stop"),
        ddl_stop=_bool(stop.get("ddl_stop", False), f"{field}.ddl_stop"),
        cb_error_rate=rate,
    )


def _backoff(value: Any, field: str) -> BackOffPolicy:
    if value is None:
        return BackOffPolicy()
    backoff = _obj(value, field)
    kind = backoff.get("backoff_type", "none")
    items = backoff.get("cfg_items") or {}
    items = _obj(items, f"{field}.cfg_items")
    if kind == "none":
        return BackOffPolicy()
    if kind == "fixed":
        fix = _num(items.get("fix_ms", 0), f"{field}.cfg_items.fix_ms")
        if fix <= 0:
            raise _FieldError(f"{field}.cfg_items.fix_ms", "a fixed back-off needs fix_ms > 0")
        return BackOffPolicy.fixed_delay(fix / 1000)
    if kind == "random":
        low = _num(items.get("min_ms", 0), f"{field}.cfg_items.min_ms")
        high = _num(items.get("max_ms", 0), f"{field}.cfg_items.max_ms")
        if not 0 <= low < high:
            raise _FieldError(f"{field}.cfg_items", "a random back-off needs max_ms > min_ms >= 0")
        return BackOffPolicy.random_delay(low / 1000, high / 1000)
    raise _FieldError(f"{field}.backoff_type", f"unknown back-off type {kind!r} (none, fixed, random)")


def _retry(entry: Any) -> RetryPolicy | None:
    entry = _obj(entry, "")
    if not _bool(entry.get("enable", False), "enable"):
        return None
    kind = entry.get("type", 0)
    if kind == 0 and not isinstance(kind, bool):
        failure = entry.get("failure_policy")
        if failure is None:
            raise _FieldError("failure_policy", "type 0 (failure retry) needs failure_policy")
        failure = _obj(failure, "failure_policy")
        return FailurePolicy(
            stop_policy=_stop(
                failure.get("stop_policy", {}), "failure_policy.stop_policy", MAX_FAILURE_RETRY
            ),
            back_off=_backoff(failure.get("backoff_policy"), "failure_policy.backoff_policy"),
            retry_same_node=_bool(failure.get("retry_same_node", False), "failure_policy.retry_same_node"),
        )
    if kind == 1:
        backup = entry.get("backup_policy")
        if backup is None:
            raise _FieldError("backup_policy", "type 1 (backup request) needs backup_policy")
        backup = _obj(backup, "backup_policy")
        delay = _int(backup.get("retry_delay_ms", 0), "backup_policy.retry_delay_ms")
        if delay == 0:
            raise _FieldError("backup_policy.retry_delay_ms", "a backup request needs retry_delay_ms > 0")
        return BackupPolicy(
            retry_delay=delay / 1000,
            stop_policy=_stop(backup.get("stop_policy", {}), "backup_policy.stop_policy", MAX_BACKUP_RETRY),
            retry_same_node=_bool(backup.get("retry_same_node", False), "backup_policy.retry_same_node"),
        )
    if kind == 2:
        raise _FieldError("type", "type 2 (mixed retry) is not supported by kitex-grpc")
    raise _FieldError("type", f"unknown retry type {kind!r} (0 failure, 1 backup)")


def parse_retry(value: Any) -> tuple[dict[str, RetryPolicy | None], list[Rejection]]:
    """``{"<method>"|"*": {"enable": bool, "type": 0|1, "failure_policy"|"backup_policy": {...}}}``;
    an entry with ``enable: false`` maps to ``None`` (no retry for that method)."""
    return _methods(value, _retry)


# -- circuit_break ----------------------------------------------------------------------------------


def _cb(entry: Any) -> CBConfig:
    entry = _obj(entry, "")
    rate = _num(entry.get("err_rate", 0), "err_rate")
    if not 0 < rate <= 1:
        raise _FieldError("err_rate", f"{rate} is outside (0, 1]")
    return CBConfig(
        enable=_bool(entry.get("enable", False), "enable"),
        err_rate=rate,
        min_sample=_int(entry.get("min_sample", 0), "min_sample", 1),
    )


def parse_circuit_break(value: Any) -> tuple[dict[str, CBConfig], list[Rejection]]:
    """``{"<method>": {"enable": bool, "err_rate": float, "min_sample": int}}`` (no ``"*"``)."""
    return _methods(value, _cb)


# -- degradation, limit -----------------------------------------------------------------------------


def parse_degradation(value: Any) -> tuple[DegradationConfig | None, list[Rejection]]:
    """``{"enable": bool, "percentage": 0..100}``."""
    try:
        entry = _obj(value, "")
        return DegradationConfig(
            _bool(entry.get("enable", False), "enable"),
            _int(entry.get("percentage", 0), "percentage", 0, 100),
        ), []
    except _FieldError as bad:
        return None, [Rejection("", bad.field, bad.reason)]


def parse_limit(value: Any) -> tuple[dict[str, int], list[Rejection]]:
    """``{"connection_limit": int, "qps_limit": int}`` -> the accepted fields (0 or absent: unlimited)."""
    if not isinstance(value, dict):
        return {}, [Rejection("", "", f"expected a JSON object, got {type(value).__name__}")]
    accepted: dict[str, int] = {}
    rejected: list[Rejection] = []
    for field in ("connection_limit", "qps_limit"):
        try:
            accepted[field] = _int(value.get(field, 0), field)
        except _FieldError as bad:
            rejected.append(Rejection("", bad.field, bad.reason))
    return accepted, rejected
