"""Live governance config of a running client or server: the update APIs, and where each value came from.

:class:`LiveClientConfig` (``client.live``) and :class:`LiveServerConfig` (``server.live``) change
the governance of a running client or server. Each update builds new frozen values and swaps them
in with one assignment, so a call reads a consistent snapshot once when it starts: an update applies
to the calls that start after it and never changes a call in flight. Every value in force is
recorded with its source (``code``, ``default``, ``go-default``, ``dict``, ``file``, ``etcd``) for
``describe()``.

Code wins over a config source exactly as in Kitex (KITEX-WIRE-2.md §15.3):

- timeouts: ``with_rpc_timeout`` / ``with_connect_timeout`` lock that field (Kitex ``initRPCInfo``);
  call options win over everything;
- retry: retry policies set in code (``with_failure_retry``, ``with_backup_request``,
  ``with_retry_method_policies``) make the client ignore the ``retry`` category (Kitex ``hasCodeCfg``);
- circuit_break, degradation, limit: the source's values apply over the code's; deleting the key
  goes back to the code's values (or the defaults).

The update methods themselves (``set_*``) are the code's voice: they always apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kitex_grpc.config import model
from kitex_grpc.governance.circuitbreak import CBConfig
from kitex_grpc.governance.degradation import DegradationConfig
from kitex_grpc.governance.limiter import LimitOption
from kitex_grpc.governance.timeouts import (
    GO_DEFAULT_CONNECT_TIMEOUT,
    GO_DEFAULT_RPC_TIMEOUT,
    WILDCARD,
    MethodTimeouts,
    Timeouts,
)
from kitex_grpc.rpcinfo import RPCConfig

if TYPE_CHECKING:
    from kitex_grpc.governance.circuitbreak import CBSuite
    from kitex_grpc.governance.degradation import Degradation
    from kitex_grpc.governance.limiter import ServerLimiter
    from kitex_grpc.governance.policy import RetryPolicy
    from kitex_grpc.governance.retry import RetryContainer

_log = logging.getLogger("kitex_grpc.config")

CODE = "code"
GO_DEFAULT = "go-default"
DEFAULT = "default"
_LOGGED_MAX = 1024


class _Records:
    """Live values and their sources, for ``describe()``; and log-once bookkeeping."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, str]] = {}
        self._logged: set[tuple[str, ...]] = set()

    def set(self, name: str, value: object, source: str) -> None:
        self.values[name] = (repr(value), source)

    def drop(self, name: str) -> None:
        self.values.pop(name, None)

    def warn_once(self, what: tuple[str, ...], message: str, *args: object) -> None:
        """Log ``message`` once per distinct ``what`` (bounded: a flood of bad writes logs a bounded set)."""
        if what in self._logged:
            return
        if len(self._logged) >= _LOGGED_MAX:
            self._logged.clear()
        self._logged.add(what)
        _log.warning(message, *args)

    def reject(self, key: str, rejections: Iterable[model.Rejection]) -> None:
        for r in rejections:
            self.warn_once(
                (key, r.method, r.field, r.reason),
                "config %s: method %r field %r rejected: %s; the value in force stays",
                key,
                r.method or "-",
                r.field or "-",
                r.reason,
            )

    def lines(self) -> list[str]:
        return [f"{name} = {value}  [{source}]" for name, (value, source) in sorted(self.values.items())]


class LiveClientConfig:
    """The update API of a running client (``client.live``). Built by the client; not by users."""

    def __init__(
        self,
        *,
        unary_methods: Iterable[str],
        base: RPCConfig,
        install_configs: Callable[[dict[str, RPCConfig]], None],
        retry: RetryContainer | None,
        circuit_breaker: CBSuite | None,
        degradation: Degradation | None,
        retry_in_code: bool,
        rpc_timeout_locked: bool,
        connect_timeout_locked: bool,
        go_defaults: bool,
        circuit_breaker_in_code: bool = False,
    ) -> None:
        self._methods = tuple(unary_methods)
        self._base = base
        self._install = install_configs
        self.retry = retry
        self.circuit_breaker = circuit_breaker
        self.degradation = degradation
        self.retry_in_code = retry_in_code
        self.rpc_timeout_locked = rpc_timeout_locked
        self.connect_timeout_locked = connect_timeout_locked
        self.go_defaults = go_defaults
        self.records = _Records()
        self._layers = _Layers()
        default = None
        if go_defaults:  # config-etcd's implicit 1000 ms / 50 ms (KITEX-WIRE-2.md §15.3)
            default = Timeouts(GO_DEFAULT_RPC_TIMEOUT, GO_DEFAULT_CONNECT_TIMEOUT)
            self.records.set("rpc_timeout[default]", default, GO_DEFAULT)
        self.timeouts = MethodTimeouts({}, default)
        if retry is not None:
            for method, policy in retry.method_policies.items():
                self.records.set(f"retry[{method}]", policy, CODE)
            if retry.default is not None:
                self.records.set("retry[*]", retry.default, CODE)
        if circuit_breaker is not None:
            self.records.set(
                "circuit_break[default]",
                circuit_breaker.service_config,
                CODE if circuit_breaker_in_code else GO_DEFAULT if go_defaults else DEFAULT,
            )
        self._apply_timeouts()

    # -- update API -----------------------------------------------------------------------------------

    def _need(self, part: object, what: str) -> Any:
        if part is None:
            raise RuntimeError(
                f"this client has no {what} slot: build it with client.with_live_config() or a config source"
            )
        return part

    def set_retry_policy(self, method: str, policy: RetryPolicy | None, source: str = CODE) -> bool:
        """Replace (``None``: remove) the retry policy of ``method`` or ``"*"`` (Kitex
        ``NotifyPolicyChange``). From a config source it is ignored when retry was set in code;
        returns whether it applied."""
        retry: RetryContainer = self._need(self.retry, "retry")
        if source != CODE and self.retry_in_code:
            self.records.warn_once(
                ("retry-code", source),
                "config: retry policies are set in code; the %s retry config is ignored",
                source,
            )
            return False
        retry.notify_policy_change(method, policy)
        if policy is None:
            self.records.drop(f"retry[{method}]")
        else:
            self.records.set(f"retry[{method}]", policy, source)
        return True

    def set_circuit_breaker(self, method: str, config: CBConfig | None, source: str = CODE) -> None:
        """Set (``None``: reset to the default) the service breaker config of ``method``."""
        cb: CBSuite = self._need(self.circuit_breaker, "circuit breaker")
        cb.update_method_cb_config(method, config)
        if config is None:
            self.records.drop(f"circuit_break[{method}]")
        else:
            self.records.set(f"circuit_break[{method}]", config, source)

    def set_instance_circuit_breaker(self, config: CBConfig, source: str = CODE) -> None:
        """Set the config of every instance breaker (instance breakers are per address, not per method)."""
        cb: CBSuite = self._need(self.circuit_breaker, "circuit breaker")
        cb.update_instance_cb_config(config)
        self.records.set("circuit_break[instance]", config, source)

    def set_timeouts(self, method: str, timeouts: Timeouts | None, source: str = CODE) -> None:
        """Set (``None``: remove) the RPC and connect timeouts of ``method`` or ``"*"``."""
        methods = dict(self.timeouts.methods)
        if timeouts is None:
            methods.pop(method, None)
            self.records.drop(f"rpc_timeout[{method}]")
        else:
            methods[method] = timeouts
            self.records.set(f"rpc_timeout[{method}]", timeouts, source)
        self.timeouts = MethodTimeouts(methods, self.timeouts.default)
        self._apply_timeouts()

    def set_degradation(self, config: DegradationConfig, source: str = CODE) -> None:
        """Set the share of calls rejected at random (config-etcd's degradation)."""
        degradation: Degradation = self._need(self.degradation, "degradation")
        degradation.update(config)
        self.records.set("degradation", config, source)

    def _apply_timeouts(self) -> None:
        base = self._base
        configs: dict[str, RPCConfig] = {}
        for name in self._methods:
            t = self.timeouts.lookup(name)
            if t is None:
                continue
            rpc = base.rpc_timeout if self.rpc_timeout_locked else t.rpc_timeout
            conn = base.connect_timeout
            if not self.connect_timeout_locked and t.connect_timeout:
                conn = t.connect_timeout
            configs[name] = RPCConfig(
                rpc, conn, base.transport_protocol, base.compression, base.rpc_timeout_set or rpc is not None
            )
        self._install(configs)

    # -- a config source's categories -----------------------------------------------------------------

    def apply(self, category: str, value: Any, source: str, key: str, rank: int = 0) -> None:
        """Apply one category's decoded JSON (``None``: deleted, back to defaults) from the source
        ranked ``rank`` (option order; a later source wins where two set the same method)."""
        if category == model.RETRY and self.retry_in_code:
            self.set_retry_policy(WILDCARD, None, source)  # logs once that it is ignored
            return
        parse, update = self._categories[category]
        accepted, rejected = parse(value if value is not None else {})
        if category == model.DEGRADATION:
            accepted = {} if value is None or accepted is None else {"": accepted}
        self.records.reject(key, rejected)
        if any(not r.method for r in rejected) and category != model.DEGRADATION:
            return  # the whole value is unusable: everything in force stays
        before, after = self._layers.put(category, rank, key, accepted, {r.method for r in rejected}, source)
        for method in before.keys() - after.keys():
            update(method, None, CODE)  # gone from every source: back to the default
        for method, (item, origin) in after.items():
            if before.get(method) != (item, origin):
                update(method, item, origin)

    @property
    def _categories(self) -> dict[str, tuple[Callable[[Any], Any], Callable[[str, Any, str], Any]]]:
        return {
            model.RPC_TIMEOUT: (model.parse_rpc_timeout, self.set_timeouts),
            model.RETRY: (model.parse_retry, self.set_retry_policy),
            model.CIRCUIT_BREAK: (model.parse_circuit_break, self.set_circuit_breaker),
            model.DEGRADATION: (model.parse_degradation, self._update_degradation),
        }

    def _update_degradation(self, _: str, config: DegradationConfig | None, source: str) -> None:
        self.set_degradation(config or DegradationConfig(), source)
        if config is None:
            self.records.drop("degradation")


class _Layers:
    """What each source set, per category, and the merge in force: per method (or field), the entry
    of the highest-ranked source that has one."""

    def __init__(self) -> None:
        self._sets: dict[str, dict[tuple[int, str], dict[str, tuple[Any, str]]]] = {}

    def merged(self, category: str) -> dict[str, tuple[Any, str]]:
        result: dict[str, tuple[Any, str]] = {}
        for _, entries in sorted(self._sets.get(category, {}).items()):
            result.update(entries)
        return result

    def put(
        self, category: str, rank: int, key: str, accepted: dict[str, Any], rejected: set[str], source: str
    ) -> tuple[dict[str, tuple[Any, str]], dict[str, tuple[Any, str]]]:
        """Record one source's new entries (a rejected name keeps its previous entry); return the
        merge before and after."""
        before = self.merged(category)
        sets = self._sets.setdefault(category, {})
        previous = sets.get((rank, key), {})
        entries = {name: (item, source) for name, item in accepted.items()}
        entries.update({name: previous[name] for name in rejected if name in previous})
        sets[(rank, key)] = entries
        return before, self.merged(category)


class LiveServerConfig:
    """The update API of a running server (``server.live``): its connection and QPS limits."""

    def __init__(self, limiter: ServerLimiter, code: LimitOption) -> None:
        self.limiter = limiter
        self.code = code
        self.records = _Records()
        self.records.set("limit", code, CODE)
        self._layers = _Layers()

    def set_limit(
        self, *, max_connections: int | None = None, max_qps: int | None = None, source: str = CODE
    ) -> None:
        """Change the connection and/or QPS limit (0 = unlimited) for connections and calls after this."""
        current = self.limiter.option
        option = LimitOption(
            current.max_connections if max_connections is None else max_connections,
            current.max_qps if max_qps is None else max_qps,
            current.max_concurrency,
        )
        self.limiter.update(option)
        self.records.set("limit", option, source)

    def apply(self, category: str, value: Any, source: str, key: str, rank: int = 0) -> None:
        """Apply the ``limit`` JSON from the source ranked ``rank`` (``None``: deleted; the fields no
        source sets are the code's limits)."""
        if category != model.LIMIT:
            return
        fields, rejected = model.parse_limit(value if value is not None else {})
        self.records.reject(key, rejected)
        if value is None:
            fields = {}
        _, merged = self._layers.put(category, rank, key, fields, {r.field for r in rejected}, source)
        code = self.code
        connections, origin = merged.get("connection_limit", (code.max_connections, CODE))
        qps, qps_origin = merged.get("qps_limit", (code.max_qps, CODE))
        self.set_limit(
            max_connections=connections, max_qps=qps, source=origin if origin != CODE else qps_origin
        )
