"""Server options: ``with_*`` functions folded into a frozen :class:`ServerOptions`.

Defaults follow Kitex (KITEX-WIRE.md §4.2): listen on ``:8888``, 5 s exit wait time.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kitex_grpc.address import parse_address
from kitex_grpc.endpoint import Middleware
from kitex_grpc.observability.suite import ObservabilitySuite, Observers
from kitex_grpc.options._base import (
    Option,
    OptionRecord,
    access_log_option,
    appender,
    callables_appender,
    check_duration,
    check_positive_int,
    setter,
    suite_option,
    tracer_option,
)
from kitex_grpc.options.client import (
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    check_setting,
    check_window_size,
    keepalive_option,
)
from kitex_grpc.options.tls import TLSConfig
from kitex_grpc.protocol.h2_limits import FloodLimits, PingEnforcement
from kitex_grpc.streaming import RecvMiddleware, SendMiddleware
from kitex_grpc.transport.ttstream.config import DEFAULT_TTSTREAM, TTStreamConfig
from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    import logging

    from kitex_grpc.config.source import ConfigSource
    from kitex_grpc.discovery.registry import Info, Registry
    from kitex_grpc.governance.acl import RejectFunc
    from kitex_grpc.governance.limiter import LimitOption
    from kitex_grpc.health import HealthServer
    from kitex_grpc.observability.lifecycle import ServerHook
    from kitex_grpc.observability.tracer import Tracer

DEFAULT_SERVICE_ADDR = ":8888"
DEFAULT_EXIT_WAIT_TIME = 5.0
# Kitex server defaults (KITEX-WIRE.md §4.2): WithMaxConnIdleTime 10 min, WithReadWriteTimeout 5 s.
DEFAULT_MAX_CONN_IDLE_TIME = 600.0
DEFAULT_READ_WRITE_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class ServerOptions:
    """The effective server configuration. Build it with ``with_*`` options, not directly."""

    service_name: str = ""
    service_addr: str = DEFAULT_SERVICE_ADDR
    transport_protocol: TransportProtocol = TransportProtocol.GRPC
    middlewares: tuple[Middleware, ...] = ()
    stream_send_middlewares: tuple[SendMiddleware, ...] = ()
    stream_recv_middlewares: tuple[RecvMiddleware, ...] = ()
    exit_wait_time: float = DEFAULT_EXIT_WAIT_TIME
    max_conn_idle_time: float = DEFAULT_MAX_CONN_IDLE_TIME
    read_write_timeout: float = DEFAULT_READ_WRITE_TIMEOUT
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    tls: TLSConfig | None = None
    grpcio_interceptors: tuple[Any, ...] = ()
    grpcio_server_options: tuple[tuple[str, Any], ...] = ()
    tracers: tuple[Tracer, ...] = ()
    hooks: tuple[ServerHook, ...] = ()
    registry: Registry | None = None
    registry_info: Info | None = None
    limit: LimitOption | None = None
    limit_reporter: Callable[[str], None] | None = None
    acl_rules: tuple[RejectFunc, ...] = ()
    # HTTP/2 knobs (Kitex WithGRPC*); None: the transport's default (KITEX-WIRE.md §3).
    grpc_initial_window_size: int | None = None
    grpc_initial_conn_window_size: int | None = None
    grpc_keepalive_time: float | None = None
    grpc_keepalive_timeout: float | None = None
    grpc_max_header_list_size: int | None = None
    grpc_max_concurrent_streams: int | None = None
    grpc_keepalive_enforcement: PingEnforcement | None = None
    grpc_flood_limits: FloodLimits | None = None
    config_sources: tuple[ConfigSource, ...] = ()  # live limits (issue 28)
    listeners: tuple[socket.socket, ...] = ()  # with_listener: serve these instead of binding
    workers: WorkersOption | None = None  # with_workers: run() supervises worker processes
    ttstream: TTStreamConfig = DEFAULT_TTSTREAM  # TTHeader Streaming (kitex_grpc.transport.ttstream.config)
    records: tuple[OptionRecord, ...] = ()


ServerOption = Option[ServerOptions]


@dataclasses.dataclass(frozen=True, slots=True)
class WorkersOption:
    """What :func:`with_workers` set: how many worker processes, and how limits and sockets are shared."""

    count: int
    divide_limits: bool = False
    reuse_port: bool | None = None  # None: SO_REUSEPORT where it balances connections (Linux)
    startup_timeout: float = 30.0


class ServerSuite(Protocol):
    """A bundle of server options (Kitex ``server.Suite``).

    The suites of :mod:`kitex_grpc.observability` describe their parts instead
    (:class:`~kitex_grpc.observability.suite.ObservabilitySuite`); ``with_suite`` takes both.
    """

    def server_options(self) -> Sequence[ServerOption]: ...


def with_server_basic_info(service_name: str) -> ServerOption:
    """Name this service (the callee's service name in RPCInfo)."""
    return setter("with_server_basic_info", "service_name", service_name)


def with_service_addr(address: str) -> ServerOption:
    """Listen on ``host:port`` (port 0 picks a free port; default ``:8888``)."""
    parse_address("with_service_addr", address, allow_port_zero=True)
    return setter("with_service_addr", "service_addr", address)


def with_listener(*sockets: socket.socket) -> ServerOption:
    """Serve on these already-listening TCP sockets instead of binding ``with_service_addr`` (Kitex
    ``WithListener``). Several sockets (an IPv4 and an IPv6 one) are served together. The server takes
    them over and closes them when it stops. GRPC_H2 and the TTHeader transports (grpcio cannot adopt
    a listening socket)."""
    for sock in sockets:
        if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
            raise TypeError(f"with_listener: expected listening TCP sockets, got {sock!r}")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ValueError(f"with_listener: {sock!r} is not listening (call listen() first)")
    if not sockets:
        raise ValueError("with_listener: give at least one socket")
    return setter("with_listener", "listeners", tuple(sockets))


def usable_cores() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count()`` elsewhere)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        return max(1, len(getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def with_workers(
    count: int | None = None,
    *,
    divide_limits: bool = False,
    reuse_port: bool | None = None,
    startup_timeout: float = 30.0,
) -> ServerOption:
    """Serve from ``count`` worker processes on one address (default: the usable cores); honoured by
    :meth:`Server.run`, which then supervises instead of serving (see :mod:`kitex_grpc.server.workers`
    and the README, "Workers").

    The program is started again for each worker, with the same command line and an environment
    variable that makes its ``run()`` serve as that worker: build the server the same way each time.
    Limits (``with_limit``, ``with_concurrency_limit``) apply per worker; with ``divide_limits=True``
    they are totals for the whole server and each worker gets ``ceil(total / count)``.
    ``reuse_port``: ``True`` gives each worker its own SO_REUSEPORT socket (the kernel balances new
    connections over them), ``False`` one listening socket shared by all; default ``True`` on Linux
    and ``False`` elsewhere (where SO_REUSEPORT does not balance). GRPC (grpcio) needs ``True``.
    ``startup_timeout``: how long a worker may take to be ready before the server gives up.
    """
    if count is None:
        count = usable_cores()
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"with_workers: expected a worker count >= 1, got {count!r}")
    check_duration("with_workers", startup_timeout, allow_zero=False)
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("with_workers: reuse_port=True, but this platform has no SO_REUSEPORT")
    value = WorkersOption(count, bool(divide_limits), reuse_port, float(startup_timeout))
    return setter("with_workers", "workers", value)


def with_transport_protocol(protocol: TransportProtocol | str) -> ServerOption:
    """Choose the transport the server speaks: ``GRPC`` (grpcio, default) or ``GRPC_H2``, ...."""
    try:
        parsed = TransportProtocol.parse(protocol)
    except ValueError as exc:
        raise ValueError(f"with_transport_protocol: {exc}") from None
    return setter("with_transport_protocol", "transport_protocol", parsed)


def with_middleware(*middlewares: Middleware) -> ServerOption:
    """Add middlewares; they run in option order, inside the timeout and outside ACL and the handler."""
    return callables_appender("with_middleware", "middlewares", middlewares)


def with_stream_send_middleware(*middlewares: SendMiddleware) -> ServerOption:
    """Add middlewares that see every message a handler's stream sends."""
    return callables_appender("with_stream_send_middleware", "stream_send_middlewares", middlewares)


def with_stream_recv_middleware(*middlewares: RecvMiddleware) -> ServerOption:
    """Add middlewares that see every message a handler's stream receives."""
    return callables_appender("with_stream_recv_middleware", "stream_recv_middlewares", middlewares)


def with_exit_wait_time(seconds: float) -> ServerOption:
    """How long ``stop()`` lets in-flight calls finish before closing (Kitex default 5 s)."""
    check_duration("with_exit_wait_time", seconds)
    return setter("with_exit_wait_time", "exit_wait_time", float(seconds))


def with_max_conn_idle_time(seconds: float) -> ServerOption:
    """Close a connection that has had no request for this long (Kitex ``WithMaxConnIdleTime``,
    default 10 min). TTHeader, Framed and Buffered connections; on GRPC_H2 (and HTTP/2 handed over
    by the TTHeader port) a connection with no stream open for this long gets GOAWAY and is closed
    (grpc-go ``MaxConnectionIdle``), between one and two times this after its last stream ended."""
    check_duration("with_max_conn_idle_time", seconds, allow_zero=False)
    return setter("with_max_conn_idle_time", "max_conn_idle_time", float(seconds))


def with_read_write_timeout(seconds: float) -> ServerOption:
    """How long the rest of a request may take to arrive once its first bytes have (Kitex
    ``WithReadWriteTimeout``, default 5 s); past it the connection is closed with a log line, as a
    stalled peer cannot be answered. TTHeader, Framed and Buffered connections; on GRPC_H2 (and
    HTTP/2 handed over by the TTHeader port) it is the handshake timeout: the client preface and
    its SETTINGS must arrive within it (grpc-go's ``ConnectionTimeout``, 120 s there)."""
    check_duration("with_read_write_timeout", seconds, allow_zero=False)
    return setter("with_read_write_timeout", "read_write_timeout", float(seconds))


def with_grpc_initial_window_size(size: int) -> ServerOption:
    """The HTTP/2 receive window of each stream, in bytes (Kitex ``WithGRPCInitialWindowSize``;
    default 1 MiB, see kitex_grpc.transport.h2.config). Setting it keeps the windows static: no BDP
    estimation grows them (as in Kitex). GRPC_H2 only: grpcio has no exact equivalent."""
    check_window_size("with_grpc_initial_window_size", size)
    return setter("with_grpc_initial_window_size", "grpc_initial_window_size", size)


def with_grpc_initial_conn_window_size(size: int) -> ServerOption:
    """The HTTP/2 receive window of each connection, in bytes (Kitex ``WithGRPCInitialConnWindowSize``;
    default 16 MiB). Setting it keeps the windows static: no BDP estimation grows them (as in Kitex).
    GRPC_H2 only: grpcio has no exact equivalent."""
    check_window_size("with_grpc_initial_conn_window_size", size)
    return setter("with_grpc_initial_conn_window_size", "grpc_initial_conn_window_size", size)


def with_grpc_keepalive(time: float, timeout: float = DEFAULT_KEEPALIVE_TIMEOUT) -> ServerOption:
    """Send a keepalive PING after ``time`` seconds; close the connection if the ACK does not come
    within ``timeout`` seconds (Kitex ``WithGRPCKeepaliveParams``; server default 2 h / 20 s). On
    grpcio: ``grpc.keepalive_time_ms`` / ``grpc.keepalive_timeout_ms``."""
    return keepalive_option("with_grpc_keepalive", time, timeout)


def with_grpc_max_header_list_size(size: int) -> ServerOption:
    """The largest header list (metadata) accepted, in bytes, advertised in SETTINGS (Kitex
    ``WithGRPCMaxHeaderListSize``). GRPC_H2 server default 16 KiB (gRPC C-core's hard limit; see the
    README, "Limits and defaults"): a request over it is reset alone, one over twice that plus 64
    KiB ends the connection (ENHANCE_YOUR_CALM), as HPACK decoding stops there. On grpcio:
    ``grpc.max_metadata_size``."""
    check_setting("with_grpc_max_header_list_size", size)
    return setter("with_grpc_max_header_list_size", "grpc_max_header_list_size", size)


def with_grpc_max_concurrent_streams(limit: int) -> ServerOption:
    """The most streams a client may open at once on one connection, advertised in SETTINGS (Kitex
    ``WithGRPCMaxConcurrentStreams``). GRPC_H2 default 100 (see the README, "Limits and defaults");
    a stream over it is refused alone with RST_STREAM REFUSED_STREAM and the connection goes on;
    clients queue calls beyond it. On grpcio (the same default 100): ``grpc.max_concurrent_streams``."""
    check_setting("with_grpc_max_concurrent_streams", limit)
    return setter("with_grpc_max_concurrent_streams", "grpc_max_concurrent_streams", limit)


def with_grpc_keepalive_enforcement_policy(
    min_time: float = 300.0, permit_without_stream: bool = False
) -> ServerOption:
    """How often clients may PING (Kitex ``WithGRPCKeepaliveEnforcementPolicy``, grpc-go's
    ``keepalive.EnforcementPolicy``; default 5 min, and no PING while no stream is open, as both).
    A PING sooner than ``min_time`` after the previous one is a strike; the third ends the
    connection with GOAWAY ENHANCE_YOUR_CALM ``too_many_pings``. GRPC_H2 only."""
    check_duration("with_grpc_keepalive_enforcement_policy", min_time)
    policy = PingEnforcement(min_time=float(min_time), permit_without_stream=bool(permit_without_stream))
    return setter("with_grpc_keepalive_enforcement_policy", "grpc_keepalive_enforcement", policy)


def with_grpc_flood_limits(limits: FloodLimits) -> ServerOption:
    """Per-connection limits on SETTINGS and RST_STREAM floods and on control replies queued for a
    client that does not read (:class:`~kitex_grpc.protocol.h2_limits.FloodLimits`; defaults in the
    README, "Limits and defaults"). GRPC_H2 only."""
    if not isinstance(limits, FloodLimits):
        raise TypeError(f"with_grpc_flood_limits: expected a FloodLimits, got {limits!r}")
    return setter("with_grpc_flood_limits", "grpc_flood_limits", limits)


def with_ttheader_streaming_options(config: TTStreamConfig) -> ServerOption:
    """TTHeader Streaming settings (receive queue bound, streams per connection): see
    :class:`~kitex_grpc.transport.ttstream.config.TTStreamConfig` (Kitex ``WithTTHeaderStreamingOptions``)."""
    if not isinstance(config, TTStreamConfig):
        raise TypeError(f"with_ttheader_streaming_options: expected a TTStreamConfig, not {config!r}")
    return setter("with_ttheader_streaming_options", "ttstream", config)


def with_max_message_size(size: int) -> ServerOption:
    """Largest message, in bytes, the server accepts or sends (default 4 MiB)."""
    check_positive_int("with_max_message_size", size)
    return setter("with_max_message_size", "max_message_size", size)


def with_tls(
    certificate_chain: bytes,
    private_key: bytes,
    root_certificates: bytes | None = None,
    require_client_auth: bool = False,
) -> ServerOption:
    """Serve TLS with this PEM key pair; ``root_certificates`` + ``require_client_auth`` for mTLS."""
    config = TLSConfig(root_certificates, certificate_chain, private_key, None, require_client_auth)
    config.validate_for_server("with_tls")
    return setter("with_tls", "tls", config)


def with_grpcio_interceptors(*interceptors: Any) -> ServerOption:
    """Attach plain ``grpc.aio`` server interceptors (grpcio transport only)."""
    return appender("with_grpcio_interceptors", "grpcio_interceptors", interceptors)


def with_grpcio_server_options(options: Sequence[tuple[str, Any]]) -> ServerOption:
    """Pass raw grpcio server arguments (grpcio transport only)."""
    return appender("with_grpcio_server_options", "grpcio_server_options", tuple(options))


def with_tracer(tracer: Tracer) -> ServerOption:
    """Add a tracer: ``tracer.start(ri)`` before the chain, ``tracer.finish(ri)`` after the handler."""
    return tracer_option(tracer)


def with_suite(suite: ServerSuite | ObservabilitySuite) -> ServerOption:
    """Apply the options a suite bundles, in its order (Kitex ``WithSuite``)."""
    if isinstance(suite, ObservabilitySuite):
        return suite_option(suite, _observer_options(suite, suite.server_observers()), "server")
    return suite_option(suite, suite.server_options(), "server")


def _observer_options(suite: object, observers: Observers) -> list[ServerOption]:
    if observers.instance_middlewares:
        raise TypeError(f"with_suite: {suite!r} gives a server instance middlewares (client only)")
    options = [with_tracer(tracer) for tracer in observers.tracers]
    if observers.stream_send_middlewares:
        options.append(with_stream_send_middleware(*observers.stream_send_middlewares))
    if observers.stream_recv_middlewares:
        options.append(with_stream_recv_middleware(*observers.stream_recv_middlewares))
    options += [with_lifecycle_hook(hook) for hook in observers.lifecycle_hooks]
    if observers.metrics_endpoint is not None:
        options.append(with_metrics_endpoint(observers.metrics_endpoint))
    return options


def with_access_log(logger: logging.Logger | None = None) -> ServerOption:
    """Log one line per finished call (off by default); see :mod:`kitex_grpc.observability.logging`."""
    return access_log_option(logger, "server")


def with_lifecycle_hook(hook: ServerHook) -> ServerOption:
    """Run ``hook`` at the server's start, serving, draining and stopped phases."""
    for phase in ("prepare", "serving", "draining", "stopped"):
        if not callable(getattr(hook, phase, None)):
            raise TypeError(f"with_lifecycle_hook: {hook!r} has no {phase}() (see ServerHook)")
    return appender("with_lifecycle_hook", "hooks", (hook,))


def _once(name: str, hook: ServerHook) -> ServerOption:
    kind = type(hook)

    def apply(fields: dict[str, Any]) -> None:
        if any(type(h) is kind for h in fields["hooks"]):
            raise ValueError(f"{name}: set more than once")
        fields["hooks"] = (*fields["hooks"], hook)

    return Option(name, hook, apply)


def with_health(health: HealthServer | None = None) -> ServerOption:
    """Serve ``grpc.health.v1.Health`` (Check, Watch), SERVING once started, NOT_SERVING while draining.

    Pass your own :class:`~kitex_grpc.health.HealthServer` to set per-service statuses later.
    """
    from kitex_grpc.health import HealthHook

    return _once("with_health", HealthHook(health))


def with_reflection() -> ServerOption:
    """Serve gRPC server reflection (``grpc.reflection.v1`` and ``v1alpha``) for the registered services."""
    from kitex_grpc.reflection import ReflectionHook

    return _once("with_reflection", ReflectionHook())


def with_metrics_endpoint(endpoint: ServerHook) -> ServerOption:
    """Serve a Prometheus ``/metrics`` page while the server runs.

    ``endpoint`` is a :class:`kitex_grpc.observability.otel_prometheus.PrometheusEndpoint` (it needs
    the ``otel`` extra) or the ``endpoint`` of a
    :class:`~kitex_grpc.observability.kitex_prom.KitexPrometheus`; it binds its address (loopback by
    default; any address it is given, see the risk in :mod:`kitex_grpc.observability.http_endpoint`)
    in ``start()`` and closes in ``stop()``.
    """
    return _once("with_metrics_endpoint", endpoint)


def with_http_probes(address: str = "127.0.0.1:8081") -> ServerOption:
    """Serve ``GET /healthz`` (alive) and ``GET /readyz`` (started, registered, not draining) on ``address``.

    Default loopback ``127.0.0.1:8081`` (8081: a common probe port, apart from the service port); in
    a Kubernetes pod use ``":8081"`` so the kubelet can reach it. See
    :mod:`kitex_grpc.health.http_probes` for the answers and the lifecycle.
    """
    from kitex_grpc.health.http_probes import HTTPProbes

    return _once("with_http_probes", HTTPProbes(address))


# -- discovery and governance (issue 6) ----------------------------------------------------------------


def with_registry(registry: Registry) -> ServerOption:
    """Register with ``registry`` once listening; deregister first on stop (Kitex ``WithRegistry``)."""
    for member in ("register", "deregister"):
        if not callable(getattr(registry, member, None)):
            raise TypeError(f"with_registry: {registry!r} has no {member}() (see discovery.Registry)")
    return setter("with_registry", "registry", registry)


def with_registry_info(info: Info) -> ServerOption:
    """What to register (Kitex ``WithRegistryInfo``); by default the service name, the bound address,
    weight 10 and no tags. An empty ``addr`` is filled with the bound address."""
    from kitex_grpc.discovery.registry import Info

    if not isinstance(info, Info):
        raise TypeError(f"with_registry_info: expected a discovery.Info, got {info!r}")
    return setter("with_registry_info", "registry_info", info)


def _merge_limit(name: str, **values: int) -> ServerOption:
    from kitex_grpc.governance.limiter import LimitOption

    LimitOption(**values)  # validate now, naming the option

    def apply(fields: dict[str, Any]) -> None:
        current = fields["limit"] or LimitOption()
        fields["limit"] = dataclasses.replace(current, **values)

    return Option(name, values, apply)


def with_limit(max_connections: int = 0, max_qps: int = 0) -> ServerOption:
    """Limit connections and QPS (Kitex ``WithLimit(&limit.Option{...})``; 0 = unlimited). Calls over a
    limit fail with OverLimitError (gRPC RESOURCE_EXHAUSTED); see :mod:`kitex_grpc.governance.limiter`."""
    return _merge_limit("with_limit", max_connections=max_connections, max_qps=max_qps)


def with_concurrency_limit(max_concurrency: int) -> ServerOption:
    """Limit the calls being handled at once (0 = unlimited); the excess fails with OverLimitError."""
    return _merge_limit("with_concurrency_limit", max_concurrency=max_concurrency)


def with_limit_reporter(reporter: Callable[[str], None]) -> ServerOption:
    """Called with ``"connection"``, ``"qps"`` or ``"concurrency"`` for each rejected call."""
    if not callable(reporter):
        raise TypeError(f"with_limit_reporter: expected a callable, got {reporter!r}")
    return setter("with_limit_reporter", "limit_reporter", reporter)


def with_acl_rules(*rules: RejectFunc) -> ServerOption:
    """Reject calls before the handler: each rule returns ``None`` or a reason (Kitex ``WithACLRules``)."""
    return callables_appender("with_acl_rules", "acl_rules", rules)


def with_config_source(source: ConfigSource) -> ServerOption:
    """Take the connection and QPS limits from ``source`` while the server runs (config-etcd's server
    suite, key ``<prefix>/<ServerServiceName>/limit``; needs ``with_server_basic_info``). The limits
    set with ``with_limit`` are the values a deleted key goes back to; ``server.live.set_limit``
    changes them from code."""
    for member in ("watch", "describe_key", "kind"):
        if not hasattr(source, member):
            raise TypeError(f"with_config_source: {source!r} has no {member!r} (see config.ConfigSource)")
    return appender("with_config_source", "config_sources", (source,))
