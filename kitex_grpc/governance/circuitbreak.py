"""Circuit breakers (Kitex ``pkg/circuitbreak``, ``bgopkg:cloud/circuitbreaker``).

:class:`Breaker` is a sans-IO state machine driven by an injected clock; its lifecycle is the
transition table :data:`TRANSITIONS`::

    CLOSED    --TRIP-->        OPEN        samples >= min_sample and error rate >= err_rate
    OPEN      --COOLED-->      HALF_OPEN   cooling time (5 s) passed, on the next allow()
    HALF_OPEN --RECOVER-->     CLOSED      2 successful probes in a row
    HALF_OPEN --PROBE_FAIL-->  OPEN        a probe failed or timed out

In HALF_OPEN one probe is let through at a time; a probe that has not reported back within the
detect timeout (200 ms) lets another through. The window is 10 s of 100 buckets.

:class:`CBSuite` holds the breakers of a client and makes its two middlewares: service level
(key ``"<from>/<to>/<method>"``, Kitex ``RPCInfo2Key``) counts every error except
InternalError, ServiceDiscoveryError, ACLError and LoadBalanceError, and counts timeouts as
timeouts; instance level (key ``host:port``) counts only GetConnectionError. BizStatusError is a
success (Kitex surfaces it after the chain). Rejections raise ServiceCircuitBreakError and
InstanceCircuitBreakError.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kitex_grpc.errors import (
    ACLError,
    BizStatusError,
    GetConnectionError,
    InstanceCircuitBreakError,
    InternalError,
    LoadBalanceError,
    ProtocolError,
    RPCTimeoutError,
    ServiceCircuitBreakError,
    ServiceDiscoveryError,
)
from kitex_grpc.governance.window import BUCKETS, WINDOW, Window
from kitex_grpc.observability.metrics import REJECT_CIRCUIT_BREAKER, record_rejection

if TYPE_CHECKING:
    from kitex_grpc.endpoint import Endpoint
    from kitex_grpc.rpcinfo import RPCInfo

Clock = Callable[[], float]

COOLING_TIMEOUT = 5.0
DETECT_TIMEOUT = 0.2
HALF_OPEN_SUCCESSES = 2


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Input(enum.Enum):
    TRIP = "trip"
    COOLED = "cooled"
    RECOVER = "recover"
    PROBE_FAIL = "probe_fail"


TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.CLOSED, Input.TRIP): State.OPEN,
    (State.OPEN, Input.COOLED): State.HALF_OPEN,
    (State.HALF_OPEN, Input.RECOVER): State.CLOSED,
    (State.HALF_OPEN, Input.PROBE_FAIL): State.OPEN,
}


class Outcome(enum.IntEnum):
    SUCCESS = 0
    FAILURE = 1
    TIMEOUT = 2
    IGNORE = 3


@dataclasses.dataclass(frozen=True, slots=True)
class CBConfig:
    """Kitex ``circuitbreak.CBConfig``; default ``{enable: true, err_rate: 0.5, min_sample: 200}``."""

    enable: bool = True
    err_rate: float = 0.5
    min_sample: int = 200

    def __post_init__(self) -> None:
        if not 0 < self.err_rate <= 1:
            raise ValueError(f"CBConfig: err_rate must be in (0, 1], got {self.err_rate!r}")
        if self.min_sample < 1:
            raise ValueError(f"CBConfig: min_sample must be >= 1, got {self.min_sample!r}")


class Breaker:
    """One circuit breaker. Pure: every method takes the time from ``clock``; nothing sleeps."""

    __slots__ = (
        "_clock",
        "_half_open_successes",
        "_opened_at",
        "_probe_at",
        "_window",
        "config",
        "cooling",
        "detect_timeout",
        "state",
        "transitions",
    )

    def __init__(
        self,
        config: CBConfig = CBConfig(),
        clock: Clock = time.monotonic,
        *,
        cooling: float = COOLING_TIMEOUT,
        detect_timeout: float = DETECT_TIMEOUT,
        window: float = WINDOW,
        buckets: int = BUCKETS,
    ) -> None:
        self.config = config
        self.cooling = cooling
        self.detect_timeout = detect_timeout
        self.state = State.CLOSED
        self.transitions: list[tuple[State, Input, State]] = []
        self._clock = clock
        self._window = Window(window, buckets)
        self._opened_at = 0.0
        self._probe_at: float | None = None
        self._half_open_successes = 0

    def _move(self, event: Input) -> None:
        nxt = TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise ProtocolError(f"circuit breaker: no transition from {self.state.name} on {event.name}")
        self.transitions.append((self.state, event, nxt))
        self.state = nxt
        now = self._clock()
        if nxt is State.OPEN:
            self._opened_at = now
            self._probe_at = None
        elif nxt is State.HALF_OPEN:
            self._half_open_successes = 0
            self._probe_at = None
        else:
            self._window.reset()

    def allow(self) -> bool:
        """May a call go through now? In HALF_OPEN this admits one probe."""
        if not self.config.enable or self.state is State.CLOSED:
            return True
        now = self._clock()
        if self.state is State.OPEN:
            if now - self._opened_at < self.cooling:
                return False
            self._move(Input.COOLED)
        # HALF_OPEN: one probe at a time; a probe silent for detect_timeout admits another
        if self._probe_at is None or now - self._probe_at >= self.detect_timeout:
            self._probe_at = now
            return True
        return False

    def record(self, outcome: Outcome) -> None:
        """Report how an admitted call ended."""
        if outcome is Outcome.IGNORE or not self.config.enable:
            return
        if self.state is State.HALF_OPEN:
            self._probe_at = None
            if outcome is Outcome.SUCCESS:
                self._half_open_successes += 1
                if self._half_open_successes >= HALF_OPEN_SUCCESSES:
                    self._move(Input.RECOVER)
            else:
                self._move(Input.PROBE_FAIL)
            return
        if self.state is State.OPEN:
            return  # a call admitted before the trip finished late: it changes nothing
        now = self._clock()
        self._window.add(int(outcome), now)
        s, f, t = self._window.totals(now)
        samples = s + f + t
        if samples >= self.config.min_sample and (f + t) / samples >= self.config.err_rate:
            self._move(Input.TRIP)

    def counts(self) -> tuple[int, int, int]:
        """(successes, failures, timeouts) in the current window."""
        return self._window.totals(self._clock())


_SERVICE_IGNORED = (InternalError, ServiceDiscoveryError, ACLError, LoadBalanceError)


def service_outcome(error: BaseException | None) -> Outcome:
    """Kitex ``ErrorTypeOnServiceLevel``."""
    if error is None:
        return Outcome.SUCCESS
    if isinstance(error, BizStatusError):
        return Outcome.SUCCESS
    if isinstance(error, _SERVICE_IGNORED):
        return Outcome.IGNORE
    if isinstance(error, RPCTimeoutError | TimeoutError):
        return Outcome.TIMEOUT
    return Outcome.FAILURE


def instance_outcome(error: BaseException | None) -> Outcome:
    """Kitex ``ErrorTypeOnInstanceLevel``: only a failure to get a connection counts."""
    return Outcome.FAILURE if isinstance(error, GetConnectionError) else Outcome.SUCCESS


def rpcinfo_to_key(ri: RPCInfo) -> str:
    """Kitex ``circuitbreak.RPCInfo2Key``: ``"<fromService>/<toService>/<method>"``."""
    return f"{ri.caller.service_name}/{ri.callee.service_name}/{ri.method.name}"


class CBSuite:
    """Service- and instance-level breakers for one client (Kitex ``circuitbreak.CBSuite``).

    ``service_config`` / ``instance_config`` are the defaults; :meth:`update_service_cb_config` sets
    one service key's config (Kitex ``UpdateServiceCBConfig``), :meth:`update_method_cb_config` the
    config of every service breaker of one method (what a config centre keys by), and
    :meth:`update_instance_cb_config` the instance breakers' (Kitex ``UpdateInstanceCBConfig``). An
    update replaces the frozen :class:`CBConfig` a breaker reads on each ``allow``/``record``; the
    breaker's window and state carry over. ``clock`` and the timing arguments exist for tests.
    """

    def __init__(
        self,
        key_func: Callable[[RPCInfo], str] = rpcinfo_to_key,
        *,
        service_config: CBConfig = CBConfig(),
        instance_config: CBConfig = CBConfig(),
        clock: Clock = time.monotonic,
        cooling: float = COOLING_TIMEOUT,
        detect_timeout: float = DETECT_TIMEOUT,
    ) -> None:
        self.key_func = key_func
        self.service_config = service_config
        self.instance_config = instance_config
        self._clock = clock
        self._cooling = cooling
        self._detect = detect_timeout
        self._service_configs: dict[str, CBConfig] = {}
        self._method_configs: dict[str, CBConfig] = {}  # replaced whole on update
        self._breaker_methods: dict[str, str] = {}  # service breaker key -> its method
        self.service_breakers: dict[str, Breaker] = {}
        self.instance_breakers: dict[str, Breaker] = {}

    def _new(self, config: CBConfig) -> Breaker:
        return Breaker(config, self._clock, cooling=self._cooling, detect_timeout=self._detect)

    def update_service_cb_config(self, key: str, config: CBConfig) -> None:
        self._service_configs[key] = config
        breaker = self.service_breakers.get(key)
        if breaker is not None:
            breaker.config = config

    def update_method_cb_config(self, method: str, config: CBConfig | None) -> None:
        """Set (``None``: reset to ``service_config``) the config of the service breakers of ``method``.

        A key set with :meth:`update_service_cb_config` keeps its own config.
        """
        configs = dict(self._method_configs)
        if config is None:
            configs.pop(method, None)
        else:
            configs[method] = config
        self._method_configs = configs
        for key, breaker in self.service_breakers.items():
            if self._breaker_methods.get(key) == method and key not in self._service_configs:
                breaker.config = config or self.service_config

    def update_instance_cb_config(self, config: CBConfig) -> None:
        """Set the config of every instance breaker, present and future (Kitex ``UpdateInstanceCBConfig``)."""
        self.instance_config = config
        for breaker in self.instance_breakers.values():
            breaker.config = config

    def method_config(self, method: str) -> CBConfig:
        """The config a new service breaker of ``method`` starts with (key overrides aside)."""
        return self._method_configs.get(method, self.service_config)

    def service_breaker(self, key: str, method: str = "") -> Breaker:
        breaker = self.service_breakers.get(key)
        if breaker is None:
            config = self._service_configs.get(key) or self._method_configs.get(method, self.service_config)
            breaker = self._new(config)
            self.service_breakers[key] = breaker
            self._breaker_methods[key] = method
        return breaker

    def instance_breaker(self, address: str) -> Breaker:
        breaker = self.instance_breakers.get(address)
        if breaker is None:
            breaker = self._new(self.instance_config)
            self.instance_breakers[address] = breaker
        return breaker

    def remove_instance(self, address: str) -> None:
        """Forget an instance's breaker (called when discovery evicts the instance)."""
        self.instance_breakers.pop(address, None)

    def service_middleware(self, next_endpoint: Endpoint) -> Endpoint:
        async def service_circuit_breaker(ri: RPCInfo, request: Any) -> Any:
            key = self.key_func(ri)
            breaker = self.service_breakers.get(key) or self.service_breaker(key, ri.method.name)
            if not breaker.allow():
                record_rejection(REJECT_CIRCUIT_BREAKER, ri)
                raise ServiceCircuitBreakError(
                    f"service circuitbreak: key={key}, state={breaker.state.value}"
                )
            try:
                reply = await next_endpoint(ri, request)
            except BaseException as exc:
                breaker.record(service_outcome(exc) if isinstance(exc, Exception) else Outcome.IGNORE)
                raise
            breaker.record(Outcome.SUCCESS)
            return reply

        return service_circuit_breaker

    def instance_middleware(self, next_endpoint: Endpoint) -> Endpoint:
        async def instance_circuit_breaker(ri: RPCInfo, request: Any) -> Any:
            address = ri.callee.address
            breaker = self.instance_breaker(address)
            if not breaker.allow():
                record_rejection(REJECT_CIRCUIT_BREAKER, ri)
                raise InstanceCircuitBreakError(f"instance circuitbreak: {address}")
            try:
                reply = await next_endpoint(ri, request)
            except BaseException as exc:
                breaker.record(instance_outcome(exc) if isinstance(exc, Exception) else Outcome.IGNORE)
                raise
            breaker.record(Outcome.SUCCESS)
            return reply

        return instance_circuit_breaker
