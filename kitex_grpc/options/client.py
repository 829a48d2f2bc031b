"""Client options: ``with_*`` functions folded into a frozen :class:`ClientOptions`.

Defaults follow Kitex where they apply (KITEX-WIRE.md §4.1): no RPC timeout, a 50 ms connect
timeout, gRPC's 4 MiB message limit. The default transport here is grpcio's gRPC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kitex_grpc.address import check_host_ports
from kitex_grpc.endpoint import Middleware
from kitex_grpc.observability.suite import ObservabilitySuite, Observers
from kitex_grpc.options._base import (
    Option,
    OptionRecord,
    access_log_option,
    appender,
    callables_appender,
    check_callable,
    check_duration,
    check_positive_int,
    setter,
    suite_option,
    tracer_option,
)
from kitex_grpc.options.tls import TLSConfig
from kitex_grpc.streaming import RecvMiddleware, SendMiddleware
from kitex_grpc.transport.ttheader.config import DEFAULT_IDLE_CONFIG
from kitex_grpc.transport.ttheader.config import IdleConfig as IdleConfig  # re-exported: its old home
from kitex_grpc.transport.ttstream.config import DEFAULT_TTSTREAM, TTStreamConfig
from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    import logging

    from kitex_grpc.config.source import ConfigSource
    from kitex_grpc.discovery.balancer import LoadBalancer
    from kitex_grpc.discovery.resolver import Resolver
    from kitex_grpc.governance.acl import RejectFunc
    from kitex_grpc.governance.circuitbreak import CBSuite
    from kitex_grpc.governance.fallback import FallbackPolicy
    from kitex_grpc.governance.policy import RetryPolicy
    from kitex_grpc.governance.timeouts import TimeoutProvider
    from kitex_grpc.governance.warmup import WarmUpOption
    from kitex_grpc.observability.tracer import Tracer

DEFAULT_CONNECT_TIMEOUT = 0.05
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
SUPPORTED_COMPRESSION = ("gzip", "deflate")  # grpc_framing.SUPPORTED_ENCODINGS less identity


@dataclasses.dataclass(frozen=True, slots=True)
class ClientOptions:
    """The effective client configuration. Build it with ``with_*`` options, not directly."""

    service_name: str = ""
    host_ports: tuple[str, ...] = ()
    rpc_timeout: float | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    transport_protocol: TransportProtocol = TransportProtocol.GRPC
    middlewares: tuple[Middleware, ...] = ()
    instance_middlewares: tuple[Middleware, ...] = ()
    stream_send_middlewares: tuple[SendMiddleware, ...] = ()
    stream_recv_middlewares: tuple[RecvMiddleware, ...] = ()
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    tls: TLSConfig | None = None
    compression: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    long_connection: IdleConfig = DEFAULT_IDLE_CONFIG
    mux_connections: int = 0  # 0: the long-connection pool (one call per connection at a time)
    grpcio_interceptors: tuple[Any, ...] = ()
    grpcio_channel_options: tuple[tuple[str, Any], ...] = ()
    tracers: tuple[Tracer, ...] = ()
    resolver: Resolver | None = None
    load_balancer: LoadBalancer | None = None
    lb_refresh_interval: float = 5.0
    retry_policy: RetryPolicy | None = None
    retry_method_policies: tuple[tuple[str, RetryPolicy], ...] = ()
    circuit_breaker: CBSuite | None = None
    acl_rules: tuple[RejectFunc, ...] = ()
    fallback: FallbackPolicy | None = None
    warming_up: WarmUpOption | None = None
    # HTTP/2 knobs (Kitex WithGRPC*); None: the transport's default (KITEX-WIRE.md §3).
    grpc_initial_window_size: int | None = None
    grpc_initial_conn_window_size: int | None = None
    grpc_keepalive_time: float | None = None
    grpc_keepalive_timeout: float | None = None
    grpc_max_header_list_size: int | None = None
    # live governance config (issue 28): sources as (source, go_defaults or None: the source's own)
    config_sources: tuple[tuple[ConfigSource, bool | None], ...] = ()
    live_config: bool = False
    timeout_provider: TimeoutProvider | None = None
    # TTHeader Streaming (kitex_grpc.transport.ttstream.config)
    ttstream: TTStreamConfig = DEFAULT_TTSTREAM
    stream_recv_timeout: float | None = None
    records: tuple[OptionRecord, ...] = ()


ClientOption = Option[ClientOptions]


class ClientSuite(Protocol):
    """A bundle of client options (Kitex ``client.Suite``).

    The suites of :mod:`kitex_grpc.observability` describe their parts instead
    (:class:`~kitex_grpc.observability.suite.ObservabilitySuite`); ``with_suite`` takes both.
    """

    def client_options(self) -> Sequence[ClientOption]: ...


def with_client_basic_info(service_name: str) -> ClientOption:
    """Name the calling service (sent as the caller's service name where the transport carries it)."""
    if not isinstance(service_name, str):
        raise TypeError(f"with_client_basic_info: service name must be str, got {service_name!r}")
    return setter("with_client_basic_info", "service_name", service_name)


def with_host_ports(*addresses: str) -> ClientOption:
    """Call these fixed ``host:port`` instances (weight 10 each), instead of a resolver."""
    check_host_ports("with_host_ports", addresses)
    return setter("with_host_ports", "host_ports", tuple(addresses))


def with_rpc_timeout(seconds: float) -> ClientOption:
    """Time limit for each unary call attempt (0 = none, Kitex's default). Streams use call options."""
    check_duration("with_rpc_timeout", seconds)
    return setter("with_rpc_timeout", "rpc_timeout", float(seconds) or None)


def with_connect_timeout(seconds: float) -> ClientOption:
    """Time limit for establishing a connection (Kitex default 50 ms)."""
    check_duration("with_connect_timeout", seconds, allow_zero=False)
    return setter("with_connect_timeout", "connect_timeout", float(seconds))


def with_transport_protocol(protocol: TransportProtocol | str) -> ClientOption:
    """Choose the transport: ``GRPC`` (grpcio, default), ``GRPC_H2``, ``TTHEADER``, ...."""
    try:
        parsed = TransportProtocol.parse(protocol)
    except ValueError as exc:
        raise ValueError(f"with_transport_protocol: {exc}") from None
    return setter("with_transport_protocol", "transport_protocol", parsed)


def with_middleware(*middlewares: Middleware) -> ClientOption:
    """Add middlewares; they run in option order, inside the RPC timeout and outside discovery."""
    return callables_appender("with_middleware", "middlewares", middlewares)


def with_instance_middleware(*middlewares: Middleware) -> ClientOption:
    """Add middlewares that run after an instance has been picked (they see ``ri.callee.address``)."""
    return callables_appender("with_instance_middleware", "instance_middlewares", middlewares)


def with_stream_send_middleware(*middlewares: SendMiddleware) -> ClientOption:
    """Add middlewares that see every message a client stream sends."""
    return callables_appender("with_stream_send_middleware", "stream_send_middlewares", middlewares)


def with_stream_recv_middleware(*middlewares: RecvMiddleware) -> ClientOption:
    """Add middlewares that see every message a client stream receives."""
    return callables_appender("with_stream_recv_middleware", "stream_recv_middlewares", middlewares)


def with_ttheader_streaming_options(config: TTStreamConfig) -> ClientOption:
    """TTHeader Streaming settings (pool size, idle time, dial timeout, receive queue bound): see
    :class:`~kitex_grpc.transport.ttstream.config.TTStreamConfig` (Kitex ``WithTTHeaderStreamingOptions``)."""
    if not isinstance(config, TTStreamConfig):
        raise TypeError(f"with_ttheader_streaming_options: expected a TTStreamConfig, not {config!r}")
    return setter("with_ttheader_streaming_options", "ttstream", config)


def with_stream_recv_timeout(seconds: float) -> ClientOption:
    """Bound each ``recv`` of a ttstream stream (Kitex ``WithStreamRecvTimeout``; default none).

    Past it the stream is cancelled (an Rst with code 12014 goes to the server) and ``recv`` raises
    :class:`~kitex_grpc.errors.RPCTimeoutError`. 0 turns it off.
    """
    check_duration("with_stream_recv_timeout", seconds)
    return setter("with_stream_recv_timeout", "stream_recv_timeout", float(seconds) or None)


def with_max_message_size(size: int) -> ClientOption:
    """Largest message, in bytes, the client sends or accepts (default 4 MiB)."""
    check_positive_int("with_max_message_size", size)
    return setter("with_max_message_size", "max_message_size", size)


# -- HTTP/2 knobs (Kitex WithGRPC*), shared with the server options ----------------------------------

MIN_WINDOW_SIZE = 65_535  # RFC 9113 default; grpc-go/Kitex ignore smaller windows, we refuse them
MAX_WINDOW_SIZE = 2**31 - 1  # RFC 9113 §6.9.1
MAX_SETTING_VALUE = 2**32 - 1  # a SETTINGS value is 32 bits
DEFAULT_KEEPALIVE_TIMEOUT = 20.0  # Kitex / grpc-go


def check_window_size(option: str, size: int) -> None:
    """An HTTP/2 flow-control window: an int within [64 KiB - 1, 2^31 - 1] bytes."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{option}: expected a window size in bytes (int), got {size!r}")
    if not MIN_WINDOW_SIZE <= size <= MAX_WINDOW_SIZE:
        raise ValueError(
            f"{option}: window size must be between {MIN_WINDOW_SIZE} and {MAX_WINDOW_SIZE} bytes,"
            f" got {size!r}"
        )


def check_setting(option: str, value: int) -> None:
    """A positive HTTP/2 SETTINGS value (32 bits)."""
    check_positive_int(option, value)
    if value > MAX_SETTING_VALUE:
        raise ValueError(f"{option}: must be at most {MAX_SETTING_VALUE}, got {value!r}")


def keepalive_option(option: str, time: float, timeout: float) -> Option[Any]:
    """``(time, timeout)`` seconds: PING after ``time`` seconds, close if unanswered after ``timeout``."""
    check_duration(f"{option} time", time, allow_zero=False)
    check_duration(f"{option} timeout", timeout, allow_zero=False)
    keepalive_time, keepalive_timeout = float(time), float(timeout)

    def apply(fields: dict[str, Any]) -> None:
        fields["grpc_keepalive_time"] = keepalive_time
        fields["grpc_keepalive_timeout"] = keepalive_timeout

    return Option(option, (keepalive_time, keepalive_timeout), apply)


def with_grpc_initial_window_size(size: int) -> ClientOption:
    """The HTTP/2 receive window of each stream, in bytes (Kitex ``WithGRPCInitialWindowSize``;
    default 1 MiB, see kitex_grpc.transport.h2.config). Setting it keeps the windows static: no BDP
    estimation grows them (as in Kitex). GRPC_H2 only: grpcio has no exact equivalent."""
    check_window_size("with_grpc_initial_window_size", size)
    return setter("with_grpc_initial_window_size", "grpc_initial_window_size", size)


def with_grpc_initial_conn_window_size(size: int) -> ClientOption:
    """The HTTP/2 receive window of each connection, in bytes (Kitex ``WithGRPCInitialConnWindowSize``;
    default 16 MiB). Setting it keeps the windows static: no BDP estimation grows them (as in Kitex).
    GRPC_H2 only: grpcio has no exact equivalent."""
    check_window_size("with_grpc_initial_conn_window_size", size)
    return setter("with_grpc_initial_conn_window_size", "grpc_initial_conn_window_size", size)


def with_grpc_keepalive(time: float, timeout: float = DEFAULT_KEEPALIVE_TIMEOUT) -> ClientOption:
    """Send a keepalive PING after ``time`` seconds; close the connection (its calls fail UNAVAILABLE)
    if the ACK does not come within ``timeout`` seconds (Kitex ``WithGRPCKeepaliveParams``; the client
    default is no keepalive). On grpcio: ``grpc.keepalive_time_ms`` / ``grpc.keepalive_timeout_ms``."""
    return keepalive_option("with_grpc_keepalive", time, timeout)


def with_grpc_max_header_list_size(size: int) -> ClientOption:
    """The largest header list (metadata) accepted, in bytes, advertised in SETTINGS (Kitex
    ``WithGRPCMaxHeaderListSize``). On grpcio: ``grpc.max_metadata_size``."""
    check_setting("with_grpc_max_header_list_size", size)
    return setter("with_grpc_max_header_list_size", "grpc_max_header_list_size", size)


def with_tls(
    root_certificates: bytes | None = None,
    certificate_chain: bytes | None = None,
    private_key: bytes | None = None,
    server_hostname: str | None = None,
) -> ClientOption:
    """Use TLS (PEM bytes). With no roots the system's are used; a key pair enables mutual TLS."""
    config = TLSConfig(root_certificates, certificate_chain, private_key, server_hostname)
    config.validate_for_client("with_tls")
    return setter("with_tls", "tls", config)


def with_compression(name: str) -> ClientOption:
    """Compress requests with ``name`` (``"gzip"``) and accept compressed responses."""
    if name not in SUPPORTED_COMPRESSION:
        raise ValueError(
            f"with_compression: unsupported compressor {name!r}; supported: {SUPPORTED_COMPRESSION}"
        )
    return setter("with_compression", "compression", name)


def with_tag(key: str, value: str) -> ClientOption:
    """Tag the callee endpoint (visible to middlewares as ``ri.callee.tags``)."""
    if not key:
        raise ValueError("with_tag: key must be non-empty")
    return appender("with_tag", "tags", ((key, value),))


def with_long_connection(
    *,
    max_idle_per_address: int = 10,
    max_idle_global: int = 100,
    max_idle_timeout: float = 60.0,
    min_idle_per_address: int = 0,
) -> ClientOption:
    """Size the long-connection pool of the TTHeader/Framed transports (Kitex ``WithLongConnection``).

    Kitex's ``CheckPoolConfig`` bounds apply: ``min_idle_per_address`` in [0, 5],
    ``max_idle_per_address`` >= 1 (and >= the minimum), ``max_idle_timeout`` >= 2 s.
    """
    check_positive_int("with_long_connection", max_idle_per_address)
    check_positive_int("with_long_connection", max_idle_global)
    check_duration("with_long_connection", max_idle_timeout, allow_zero=False)
    if max_idle_timeout < 2.0:
        raise ValueError(f"with_long_connection: max_idle_timeout must be >= 2 s, got {max_idle_timeout!r}")
    if isinstance(min_idle_per_address, bool) or not 0 <= min_idle_per_address <= 5:
        raise ValueError(
            f"with_long_connection: min_idle_per_address must be in [0, 5], got {min_idle_per_address!r}"
        )
    if min_idle_per_address > max_idle_per_address:
        raise ValueError("with_long_connection: min_idle_per_address exceeds max_idle_per_address")
    config = IdleConfig(min_idle_per_address, max_idle_per_address, max_idle_global, float(max_idle_timeout))
    return setter("with_long_connection", "long_connection", config)


def with_mux_connection(conn_num: int) -> ClientOption:
    """Multiplex calls over ``conn_num`` shared connections per address (Kitex ``WithMuxConnection``).

    TTHeader transports only (``TTHEADER`` or ``TTHEADER_FRAMED``): many calls are in flight on each
    connection at once and replies are matched by seq id, instead of the long-connection pool's one
    call per connection. Requests written in the same event-loop turn share one write, so a busy
    client makes far fewer syscalls. The server must answer pipelined requests (a kitex-grpc server
    does, concurrently; a Go Kitex server does in order, or concurrently with ``WithMuxTransport``).
    Kitex marks its mux transport deprecated; here it is an opt-in for throughput. Use 2 or more:
    over one connection a batch of requests and its batch of replies take turns.
    """
    check_positive_int("with_mux_connection", conn_num)
    return setter("with_mux_connection", "mux_connections", conn_num)


def with_grpcio_interceptors(*interceptors: Any) -> ClientOption:
    """Attach plain ``grpc.aio`` client interceptors (grpcio transport only)."""
    return appender("with_grpcio_interceptors", "grpcio_interceptors", interceptors)


def with_grpcio_channel_options(options: Sequence[tuple[str, Any]]) -> ClientOption:
    """Pass raw grpcio channel arguments (grpcio transport only)."""
    return appender("with_grpcio_channel_options", "grpcio_channel_options", tuple(options))


def with_tracer(tracer: Tracer) -> ClientOption:
    """Add a tracer: ``tracer.start(ri)`` before the chain, ``tracer.finish(ri)`` when the call is over."""
    return tracer_option(tracer)


def with_suite(suite: ClientSuite | ObservabilitySuite) -> ClientOption:
    """Apply the options a suite bundles, in its order (Kitex ``WithSuite``)."""
    if isinstance(suite, ObservabilitySuite):
        return suite_option(suite, _observer_options(suite, suite.client_observers()), "client")
    return suite_option(suite, suite.client_options(), "client")


def _observer_options(suite: object, observers: Observers) -> list[ClientOption]:
    if observers.lifecycle_hooks or observers.metrics_endpoint is not None:
        raise TypeError(
            f"with_suite: {suite!r} gives a client lifecycle hooks or a metrics endpoint (server only)"
        )
    options = [with_tracer(tracer) for tracer in observers.tracers]
    if observers.instance_middlewares:
        options.append(with_instance_middleware(*observers.instance_middlewares))
    if observers.stream_send_middlewares:
        options.append(with_stream_send_middleware(*observers.stream_send_middlewares))
    if observers.stream_recv_middlewares:
        options.append(with_stream_recv_middleware(*observers.stream_recv_middlewares))
    return options


def with_access_log(logger: logging.Logger | None = None) -> ClientOption:
    """Log one line per finished call (off by default); see :mod:`kitex_grpc.observability.logging`."""
    return access_log_option(logger, "client")


# -- discovery and governance (issue 6) ----------------------------------------------------------------


def with_resolver(resolver: Resolver) -> ClientOption:
    """Find instances with ``resolver`` (Kitex ``WithResolver``); ``with_host_ports`` overrides it."""
    for member in ("target", "resolve", "diff", "name"):
        if not hasattr(resolver, member):
            raise TypeError(f"with_resolver: {resolver!r} has no {member!r} (see discovery.Resolver)")
    return setter("with_resolver", "resolver", resolver)


def with_load_balancer(balancer: LoadBalancer, *, refresh_interval: float = 5.0) -> ClientOption:
    """Balance with ``balancer`` (default smooth weighted round robin) and re-resolve every
    ``refresh_interval`` seconds (Kitex ``WithLoadBalancer(lb, &lbcache.Options{RefreshInterval})``)."""
    if not callable(getattr(balancer, "get_picker", None)) or not hasattr(balancer, "name"):
        raise TypeError(f"with_load_balancer: {balancer!r} needs get_picker(result) and name")
    check_duration("with_load_balancer", refresh_interval, allow_zero=False)

    def apply(fields: dict[str, Any]) -> None:
        fields["load_balancer"] = balancer
        fields["lb_refresh_interval"] = float(refresh_interval)

    return Option("with_load_balancer", balancer, apply)


def _check_policy(option: str, policy: object, kinds: tuple[type, ...]) -> None:
    if not isinstance(policy, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{option}: expected a {names}, got {policy!r}")


def with_failure_retry(policy: object = None) -> ClientOption:
    """Retry failed unary calls by a :class:`~kitex_grpc.governance.FailurePolicy` (default: up to 2
    retries of timeouts). Replaces any backup policy (Kitex ``WithFailureRetry``)."""
    from kitex_grpc.governance.policy import FailurePolicy

    policy = FailurePolicy() if policy is None else policy
    _check_policy("with_failure_retry", policy, (FailurePolicy,))
    return setter("with_failure_retry", "retry_policy", policy)


def with_backup_request(policy: object) -> ClientOption:
    """Hedge slow unary calls by a :class:`~kitex_grpc.governance.BackupPolicy` (Kitex
    ``WithBackupRequest``). Replaces any failure policy."""
    from kitex_grpc.governance.policy import BackupPolicy

    _check_policy("with_backup_request", policy, (BackupPolicy,))
    return setter("with_backup_request", "retry_policy", policy)


def with_retry_method_policies(policies: dict[str, RetryPolicy]) -> ClientOption:
    """Per-method retry policies, by method name; they win over the client-wide policy."""
    from kitex_grpc.governance.policy import BackupPolicy, FailurePolicy

    for name, policy in policies.items():
        _check_policy(f"with_retry_method_policies[{name!r}]", policy, (FailurePolicy, BackupPolicy))
    return setter("with_retry_method_policies", "retry_method_policies", tuple(policies.items()))


def with_circuit_breaker(suite: CBSuite | None = None) -> ClientOption:
    """Service- and instance-level circuit breakers (Kitex ``WithCircuitBreaker(NewCBSuite(...))``)."""
    from kitex_grpc.governance.circuitbreak import CBSuite

    suite = CBSuite() if suite is None else suite
    _check_policy("with_circuit_breaker", suite, (CBSuite,))
    return setter("with_circuit_breaker", "circuit_breaker", suite)


def with_acl_rules(*rules: RejectFunc) -> ClientOption:
    """Reject calls before discovery: each rule returns ``None`` or a reason (Kitex ``WithACLRules``)."""
    return callables_appender("with_acl_rules", "acl_rules", rules)


def with_fallback(policy: FallbackPolicy) -> ClientOption:
    """Run a fallback after the last attempt (Kitex ``WithFallback``); see :mod:`kitex_grpc.governance`."""
    from kitex_grpc.governance.fallback import FallbackPolicy

    _check_policy("with_fallback", policy, (FallbackPolicy,))
    return setter("with_fallback", "fallback", policy)


def with_warming_up(option: WarmUpOption | None = None) -> ClientOption:
    """Resolve (and connect) when the client is created, before the first call (Kitex ``WithWarmingUp``)."""
    from kitex_grpc.governance.warmup import WarmUpOption

    option = WarmUpOption() if option is None else option
    _check_policy("with_warming_up", option, (WarmUpOption,))
    return setter("with_warming_up", "warming_up", option)


# -- live governance config (issue 28) ----------------------------------------------------------------


def with_live_config() -> ClientOption:
    """Give the client every live slot (retry, circuit breakers, degradation) so that ``client.live``
    can change its governance at run time; implied by :func:`with_config_source`. Without it the
    update API changes only what the options configured (and timeouts, which always work)."""
    return setter("with_live_config", "live_config", True)


def with_config_source(source: ConfigSource, *, go_defaults: bool | None = None) -> ClientOption:
    """Take timeouts, retry, circuit breakers and degradation from ``source`` while the client runs
    (kitex-contrib config-etcd's client suite; keys and JSON in :mod:`kitex_grpc.config`).

    ``go_defaults``: apply config-etcd's implicit defaults even where the source has no key, as a Go
    client with the suite does: a 1 s RPC timeout and 50 ms connect timeout for every method, and
    service and instance circuit breakers on ({enable, 0.5, 200}). ``None`` (default) follows the
    source: on for ``EtcdConfigSource`` (Go parity), off for ``FileSource`` and ``DictSource``.
    Code-set options win as in Kitex (see :mod:`kitex_grpc.config.live`).

    The watches start when the client is made inside a running event loop; otherwise (and to wait
    for the first read, as Kitex's ``NewClient`` does for up to 5 s) ``await client.config_ready()``.
    The client stops its watches on ``close()``; the source itself (its etcd connections) belongs to
    the caller: ``await source.close()``. Several sources merge per method; a later one wins.
    """
    for member in ("watch", "describe_key", "kind"):
        if not hasattr(source, member):
            raise TypeError(f"with_config_source: {source!r} has no {member!r} (see config.ConfigSource)")
    if go_defaults is not None and not isinstance(go_defaults, bool):
        raise TypeError(f"with_config_source: go_defaults must be a bool or None, got {go_defaults!r}")
    return appender("with_config_source", "config_sources", ((source, go_defaults),))


def with_timeout_provider(provider: TimeoutProvider) -> ClientOption:
    """A per-call function of the RPCInfo returning :class:`~kitex_grpc.governance.timeouts.Timeouts`
    (or ``None``) for that call (Kitex ``WithTimeoutProvider``); e.g. adaptive timeouts. It runs for
    every call; ``with_rpc_timeout`` / ``with_connect_timeout`` and call options win over it."""
    check_callable("with_timeout_provider", provider)
    return setter("with_timeout_provider", "timeout_provider", provider)
