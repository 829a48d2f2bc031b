"""The retry container: the outermost client middleware (Kitex ``pkg/retry/retryer.go``,
``failure_retryer.go``, ``backup_retryer.go``).

The policy for a call is, first match wins: ``callopt.with_retry_policy``, the method's entry in
``client.with_retry_method_policies``, then ``client.with_failure_retry`` /
``client.with_backup_request``. Every attempt re-runs the rest of the chain (service breaker, its own
RPC timeout, user middlewares, discovery, ...) on a fresh RPCInfo (``ri.attempt`` counts).
Streaming calls are never retried.

Each retried attempt carries the persistent metainfo ``RetryReq`` (Kitex ``retry.TransitKey``), so
the server it reaches will not retry its own downstream calls (chain stop) unless
``disable_chain_stop``. Retries spend a budget (the percentage limit): the first attempt of every
call counts as a success and every retry as a failure in a 10 s window per ``from/to/method``;
once retries reach ``cb_error_rate`` of that window (with >= 10 samples) no further retries are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from kitex_grpc import metainfo
from kitex_grpc.errors import RetryError, RPCTimeoutError
from kitex_grpc.governance.circuitbreak import Clock, rpcinfo_to_key
from kitex_grpc.governance.policy import BackupPolicy, FailurePolicy, RetryPolicy, StopPolicy
from kitex_grpc.governance.window import Window
from kitex_grpc.rpcinfo import AVOID_KEY, inherited_deadline

if TYPE_CHECKING:
    from kitex_grpc.endpoint import Endpoint
    from kitex_grpc.rpcinfo import RPCInfo

TRANSIT_KEY = "RetryReq"
"""Kitex ``retry.TransitKey``: set (persistent) on retried requests."""

_TRANSIT_KEY_CGI = metainfo.http_to_cgi(metainfo.cgi_to_http(TRANSIT_KEY))

CALL_POLICY_KEY = "kitex.retry_policy"
"""``ri.extra`` key holding a per-call policy from ``callopt.with_retry_policy``."""

BUDGET_MIN_SAMPLE = 10
"""Kitex ``cbMinSample`` for the retry budget."""


def is_retry_request() -> bool:
    """Kitex ``retry.IsRemoteRetryRequest``: is the request being served itself a retry?

    Over TTHeader the key arrives as ``RetryReq``; over gRPC metadata it travels as ``rpc-persist-retryreq``
    and comes back in metainfo's CGI form ``RETRYREQ``, so both spellings count.
    """
    return (
        metainfo.get_persistent_value(TRANSIT_KEY) is not None
        or metainfo.get_persistent_value(_TRANSIT_KEY_CGI) is not None
    )


class RetryStats:
    """Counters of one container: calls seen, retries and backups sent, and stops by reason."""

    __slots__ = ("backups", "budget_stops", "calls", "chain_stops", "retries")

    def __init__(self) -> None:
        self.calls = 0
        self.retries = 0
        self.backups = 0
        self.budget_stops = 0
        self.chain_stops = 0


WILDCARD = "*"
"""The method key that matches every method without an entry of its own (Kitex retry container)."""


class RetryContainer:
    """Applies retry policies; :meth:`middleware` is the client's ``retry`` slot.

    The policies live in one immutable snapshot ``(method map, default)`` that updates replace whole
    (:meth:`notify_policy_change`, :meth:`delete_policy`): a call reads it once when it starts, so an
    update applies to calls that start after it and never changes an attempt loop already running.
    """

    def __init__(
        self,
        default: RetryPolicy | None = None,
        method_policies: Mapping[str, RetryPolicy] | None = None,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        # (method map, default): replaced whole, never mutated once published
        self._snapshot: tuple[dict[str, RetryPolicy], RetryPolicy | None] = (
            dict(method_policies or {}),
            default,
        )
        self.stats = RetryStats()
        self._clock = clock
        self._rng = rng or random.Random()
        self._budgets: dict[str, Window] = {}

    @property
    def default(self) -> RetryPolicy | None:
        """The policy of methods without an entry (set in code, or the ``"*"`` entry)."""
        return self._snapshot[1]

    @property
    def method_policies(self) -> Mapping[str, RetryPolicy]:
        """The per-method policies now in force (read-only)."""
        return MappingProxyType(self._snapshot[0])

    def notify_policy_change(self, method: str, policy: RetryPolicy | None) -> None:
        """Replace the policy of ``method`` (``"*"``: every method without its own entry); ``None``
        removes it (Kitex ``Container.NotifyPolicyChange`` / ``DeletePolicy``)."""
        if policy is not None and not isinstance(policy, FailurePolicy | BackupPolicy):
            raise TypeError(f"notify_policy_change: expected a FailurePolicy or BackupPolicy, got {policy!r}")
        methods, default = self._snapshot
        if method == WILDCARD:
            self._snapshot = (methods, policy)
            return
        updated = dict(methods)
        if policy is None:
            updated.pop(method, None)
        else:
            updated[method] = policy
        self._snapshot = (updated, default)

    def delete_policy(self, method: str) -> None:
        """Remove the policy of ``method`` (Kitex ``DeletePolicy``)."""
        self.notify_policy_change(method, None)

    def policy_for(self, ri: RPCInfo) -> RetryPolicy | None:
        override: RetryPolicy | None = ri.extra.get(CALL_POLICY_KEY)
        if override is not None:
            return override
        methods, default = self._snapshot
        return methods.get(ri.method.name, default)

    # -- pure decisions -------------------------------------------------------------------------------

    def _budget(self, key: str) -> Window:
        window = self._budgets.get(key)
        if window is None:
            window = self._budgets[key] = Window()
        return window

    def stop_reason(self, stop: StopPolicy, key: str, delay: float = 0.0) -> str | None:
        """Why no further attempt may be made now, or ``None`` (chain stop, DDL stop, budget)."""
        if not stop.disable_chain_stop and is_retry_request():
            self.stats.chain_stops += 1
            return "chain stop retry"
        if stop.ddl_stop:
            upstream = inherited_deadline()
            if upstream is not None and upstream - self._clock() <= delay:
                return "deadline of the upstream call reached"
        successes, failures, _ = self._budget(key).totals(self._clock())
        samples = successes + failures
        if samples >= BUDGET_MIN_SAMPLE and failures / samples >= stop.cb_error_rate:
            self.stats.budget_stops += 1
            return "retry circuit break"
        return None

    @staticmethod
    def retryable(policy: FailurePolicy, error: BaseException, ri: RPCInfo) -> bool:
        """Kitex ``FailurePolicy`` result check: timeouts by default, plus the custom predicate."""
        srr = policy.should_result_retry
        timeout = isinstance(error, RPCTimeoutError)
        if srr is None:
            return timeout
        if timeout and not srr.not_retry_for_timeout:
            return True
        return srr.error_retry is not None and srr.error_retry(error, ri)

    # -- mechanism ------------------------------------------------------------------------------------

    def middleware(self, next_endpoint: Endpoint) -> Endpoint:
        async def retry(ri: RPCInfo, request: Any) -> Any:
            policy = self.policy_for(ri)
            if policy is None or ri.method.mode.is_streaming:
                return await next_endpoint(ri, request)
            self.stats.calls += 1
            key = rpcinfo_to_key(ri)
            self._budget(key).add(0, self._clock())  # the first attempt counts as a success
            if isinstance(policy, BackupPolicy):
                return await self._backup(policy, key, ri, request, next_endpoint)
            return await self._failure(policy, key, ri, request, next_endpoint)

        return retry

    def _attempt_info(self, ri: RPCInfo, attempt: int, pinned: str, avoid: set[str], same: bool) -> RPCInfo:
        nri = ri.copy_for_attempt(attempt)
        nri.extra.pop(CALL_POLICY_KEY, None)
        if pinned:
            nri.callee.address = pinned
        elif avoid and not same:
            nri.extra[AVOID_KEY] = set(avoid)
        self._budget(rpcinfo_to_key(ri)).add(1, self._clock())  # a retry counts as a failure
        return nri

    async def _run(self, ri: RPCInfo, request: Any, next_endpoint: Endpoint) -> Any:
        if ri.attempt == 1:
            return await next_endpoint(ri, request)
        with metainfo.with_persistent_value(TRANSIT_KEY, str(ri.attempt - 1)):
            return await next_endpoint(ri, request)

    @staticmethod
    def _adopt(ri: RPCInfo, attempt: RPCInfo) -> None:
        ri.callee.address = attempt.callee.address
        ri.response_metadata = attempt.response_metadata
        if attempt is not ri:  # in place: they may be the caller's lists (callopt.with_grpc_header)
            ri.response_headers[:] = attempt.response_headers
            ri.response_trailers[:] = attempt.response_trailers
        ri.attempt = attempt.attempt

    async def _failure(
        self, policy: FailurePolicy, key: str, ri: RPCInfo, request: Any, next_endpoint: Endpoint
    ) -> Any:
        stop = policy.stop_policy
        start = self._clock()
        pinned = ri.callee.address
        avoid: set[str] = set()
        current = ri
        srr = policy.should_result_retry
        last_error: BaseException | None = None
        last_reply: Any = None
        for attempt in range(1, stop.max_retry_times + 2):
            if attempt > 1:
                if stop.max_duration and self._clock() - start > stop.max_duration:
                    raise RetryError(
                        f"retry[{attempt - 2}] failed, exceed max duration, to={ri.callee.service_name},"
                        f" method={ri.method.name}"
                    ) from last_error
                delay = policy.back_off.delay(self._rng)
                if self.stop_reason(stop, key, delay) is not None:
                    break
                if delay:
                    await asyncio.sleep(delay)
                current = self._attempt_info(ri, attempt, pinned, avoid, policy.retry_same_node)
                self.stats.retries += 1
            try:
                reply = await self._run(current, request, next_endpoint)
            except Exception as exc:
                last_error = exc
                self._adopt(ri, current)
                if current.callee.address:
                    avoid.add(current.callee.address)
                if not self.retryable(policy, exc, current):
                    raise
                continue
            self._adopt(ri, current)
            resp_retry = srr.resp_retry if srr is not None else None
            if resp_retry is not None and attempt <= stop.max_retry_times and resp_retry(reply, current):
                last_error, last_reply = None, reply
                continue
            return reply
        if last_error is not None:
            raise last_error
        return last_reply

    async def _backup(
        self, policy: BackupPolicy, key: str, ri: RPCInfo, request: Any, next_endpoint: Endpoint
    ) -> Any:
        stop = policy.stop_policy
        pinned = ri.callee.address
        attempts: dict[asyncio.Task[Any], RPCInfo] = {}

        def launch(info: RPCInfo) -> None:
            attempts[asyncio.ensure_future(self._run(info, request, next_endpoint))] = info

        launch(ri)
        launched = 1
        last_error: BaseException | None = None
        try:
            while True:
                more = launched <= stop.max_retry_times
                pending = [t for t in attempts if not t.done()]
                if not pending and not more:
                    assert last_error is not None
                    raise last_error
                if pending:
                    done, _ = await asyncio.wait(
                        pending, timeout=policy.retry_delay if more else None, return_when="FIRST_COMPLETED"
                    )
                else:
                    done = set()
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        self._adopt(ri, attempts[task])
                        return task.result()
                    last_error = exc
                if done and any(not t.done() for t in attempts):
                    continue  # an attempt failed; the others may still succeed
                if not more:
                    continue
                if self.stop_reason(stop, key) is not None:
                    stop = StopPolicy(max_retry_times=launched - 1)
                    continue
                avoid = {info.callee.address for info in attempts.values() if info.callee.address}
                launched += 1
                self.stats.backups += 1
                self.stats.retries += 1
                launch(self._attempt_info(ri, launched, pinned, avoid, policy.retry_same_node))
        finally:
            for task in attempts:
                if not task.done():
                    task.cancel()
            for task in attempts:
                with contextlib.suppress(BaseException):
                    await task
