"""The generic client: one chain, built once, in Kitex's documented order.

Outermost first (ARCHITECTURE.md "Middleware order", Kitex ``client/client.go initMiddlewares``)::

    retry                       retry/backup container (with_failure_retry, with_backup_request, ...)
    service_circuit_breaker     (with_circuit_breaker)
    rpc_timeout                 sets ri.deadline, raises RPCTimeoutError
    user middlewares            in option order
    acl                         (with_acl_rules)
    discovery                   resolve + pick an instance, re-pick on connect failure
    instance_circuit_breaker    (with_circuit_breaker)
    instance middlewares        in option order
    error_mapping               foreign errors -> RemoteOrNetworkError
    transport                   grpcio / h2 / ttheader

A slot that is not configured holds no middleware at all, so it costs nothing per call. Fallback
(``with_fallback``, ``callopt.with_fallback``) runs after the chain, as Kitex's ``Call`` does.

Tracers (``with_tracer``, suites) run outside the whole chain: ``start`` before it, ``finish`` once the
call is over (for streams: when the stream ends). Without a tracer the hook is a ``None`` test.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from kitex_grpc import callopt as _callopt
from kitex_grpc.client.middlewares import (
    error_mapping_middleware,
    rpc_timeout_middleware,
)
from kitex_grpc.config.live import LiveClientConfig
from kitex_grpc.config.model import CLIENT_CATEGORIES
from kitex_grpc.config.source import ConfigKey
from kitex_grpc.config.watch import ConfigWatch
from kitex_grpc.discovery.balancer import WeightedRoundRobinBalancer
from kitex_grpc.discovery.bridge import Discovery
from kitex_grpc.discovery.cache import CacheOptions
from kitex_grpc.discovery.static import StaticResolver
from kitex_grpc.endpoint import Endpoint, Middleware, chain
from kitex_grpc.errors import InternalError
from kitex_grpc.governance.acl import acl_middleware
from kitex_grpc.governance.circuitbreak import CBConfig, CBSuite
from kitex_grpc.governance.degradation import Degradation
from kitex_grpc.governance.fallback import CALL_FALLBACK_KEY
from kitex_grpc.governance.retry import CALL_POLICY_KEY, RetryContainer
from kitex_grpc.observability.tracer import compose, run_traced
from kitex_grpc.options.client import DEFAULT_CONNECT_TIMEOUT, ClientOptions
from kitex_grpc.rpcinfo import EndpointInfo, RPCConfig, RPCInfo
from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo, StreamingMode, method_for_call
from kitex_grpc.streaming import (
    BidiStreamCall,
    ClientStreamCall,
    ServerStreamCall,
    Stream,
    StreamArgs,
    StreamIO,
)
from kitex_grpc.transport import new_client_transport
from kitex_grpc.transport.base import NETWORK_ERRORS_MAPPED, ClientTransport


class Client:
    """A client of one service. Make it with :func:`kitex_grpc.new_client` or generated ``new_client``."""

    def __init__(self, service: ServiceInfo, dest_service: str, options: ClientOptions) -> None:
        if not dest_service:
            raise ValueError("new_client: the destination service name must be non-empty")
        self._service = service
        self._dest = dest_service
        self._options = options
        self._transport: ClientTransport = new_client_transport(options, service.payload_codec)
        self._caller = EndpointInfo(options.service_name)
        self._tags = dict(options.tags)
        self._unary_config = RPCConfig(
            options.rpc_timeout,
            options.connect_timeout,
            options.transport_protocol,
            options.compression,
            options.rpc_timeout is not None,
        )
        # Kitex applies WithRPCTimeout to unary calls only; streams take a deadline per call.
        self._stream_config = RPCConfig(
            None, options.connect_timeout, options.transport_protocol, options.compression, False
        )
        # with_host_ports become a static resolver; they override with_resolver, as in Kitex
        resolver = StaticResolver(options.host_ports) if options.host_ports else options.resolver
        self.discovery = Discovery(
            resolver,
            options.load_balancer or WeightedRoundRobinBalancer(),
            CacheOptions(options.lb_refresh_interval),
            self._transport,
        )
        self.circuit_breaker = options.circuit_breaker
        self.retry: RetryContainer | None = None
        if options.retry_policy is not None or options.retry_method_policies:
            self.retry = RetryContainer(options.retry_policy, dict(options.retry_method_policies))
        # per-method unary configs set by client.live (timeouts); empty: _unary_config for all
        self._unary_configs: dict[str, RPCConfig] = {}
        self.degradation: Degradation | None = None
        self._config_watch: ConfigWatch | None = None
        self.live = self._live_config()
        if self.circuit_breaker is not None:
            self.discovery.add_removal_listener(self.circuit_breaker.remove_instance)
        named = self._middlewares()
        self.chain_names: tuple[str, ...] = (*(name for name, _ in named), "transport")
        middlewares = [mw for _, mw in named]
        self._middleware_list = middlewares
        self._adhoc_unary: Endpoint | None = None
        self._plain = options.fallback is None
        self._unary: Endpoint = chain(middlewares, self._transport.unary)
        self._stream: Endpoint = chain(middlewares, self._transport_stream)
        self._unary_methods = {
            name: mi
            for name, mi in service.methods.items()
            if mi.mode in (StreamingMode.UNARY, StreamingMode.NONE)
        }
        self._tracer = compose(options.tracers)
        tracer = self._tracer
        self._on_stream_finish = None if tracer is None else (lambda ri, _error: tracer.finish(ri))
        self._closed = False
        if self._config_watch is not None:
            with contextlib.suppress(RuntimeError):  # without a running loop: await config_ready()
                self._config_watch.start()
        self._warmup: asyncio.Task[None] | None = None
        if options.warming_up is not None:
            # without a running loop the caller awaits warm_up() itself
            with contextlib.suppress(RuntimeError):
                self._warmup = asyncio.get_running_loop().create_task(self.warm_up())

    def _live_config(self) -> LiveClientConfig:
        """``client.live``; with a config source or ``with_live_config`` every live slot exists."""
        opts = self._options
        sources = opts.config_sources
        go_defaults = any(s.go_defaults if g is None else g for s, g in sources)
        if sources or opts.live_config:
            if self.retry is None:
                self.retry = RetryContainer()
            if self.circuit_breaker is None:
                # config-etcd's suite switches both breakers on ({enable, 0.5, 200}); without Go's
                # defaults a breaker is on only for the methods a config names
                default = CBConfig() if go_defaults else CBConfig(enable=False)
                self.circuit_breaker = CBSuite(service_config=default, instance_config=default)
            self.degradation = Degradation()
        live = LiveClientConfig(
            unary_methods=self._service.methods,
            base=self._unary_config,
            install_configs=self._install_configs,
            retry=self.retry,
            circuit_breaker=self.circuit_breaker,
            degradation=self.degradation,
            retry_in_code=opts.retry_policy is not None or bool(opts.retry_method_policies),
            rpc_timeout_locked=opts.rpc_timeout is not None,
            connect_timeout_locked=opts.connect_timeout != DEFAULT_CONNECT_TIMEOUT
            or any(r.name == "with_connect_timeout" for r in opts.records),
            go_defaults=go_defaults,
            circuit_breaker_in_code=opts.circuit_breaker is not None,
        )
        if sources:
            keys = [ConfigKey("client", c, opts.service_name, self._dest) for c in CLIENT_CATEGORIES]
            self._config_watch = ConfigWatch([(s, k) for s, _ in sources for k in keys], live.apply)
        return live

    def _install_configs(self, configs: dict[str, RPCConfig]) -> None:
        self._unary_configs = configs

    async def config_ready(self, within: float = 5.0) -> bool:
        """Start the config sources' watches if not yet started and wait (at most ``within`` s) until
        each key was read once (Kitex's suite blocks up to 5 s per key in ``NewClient``). ``True`` at
        once without a config source."""
        if self._config_watch is None:
            return True
        return await self._config_watch.ready(within)

    def _middlewares(self) -> list[tuple[str, Middleware]]:
        opts = self._options
        cb = self.circuit_breaker
        named: list[tuple[str, Middleware]] = []
        if self.retry is not None:
            named.append(("retry", self.retry.middleware))
        if cb is not None:
            named.append(("service_circuit_breaker", cb.service_middleware))
        named.append(("rpc_timeout", rpc_timeout_middleware))
        named.extend((f"user:{_name(mw)}", mw) for mw in opts.middlewares)
        rules = opts.acl_rules if self.degradation is None else (*opts.acl_rules, self.degradation.rule)
        if rules:
            named.append(("acl", acl_middleware(rules)))
        named.append(("discovery", self.discovery.middleware))
        if cb is not None:
            named.append(("instance_circuit_breaker", cb.instance_middleware))
        named.extend((f"instance:{_name(mw)}", mw) for mw in opts.instance_middlewares)
        # A transport that maps its own network errors needs no mapping layer (one await less per call).
        mapped = getattr(self._transport, NETWORK_ERRORS_MAPPED, False) is True
        named.append(("error_mapping", _unchanged if mapped else error_mapping_middleware))
        return named

    @property
    def options(self) -> ClientOptions:
        return self._options

    @property
    def service_info(self) -> ServiceInfo:
        return self._service

    def describe(self) -> str:
        """The effective configuration, readable: options as recorded, the chain, the tracers."""
        from kitex_grpc.observability.diagnostics import describe_client

        return describe_client(self)

    # -- calls ----------------------------------------------------------------------------------------

    async def call(self, method: str, request: Any, *opts: _callopt.CallOption) -> Any:
        """Make a unary (or one-way) call and return the reply (``None`` for one-way)."""
        mi = self._unary_methods.get(method)
        if mi is None or self._closed:
            mi = self._method(method, (StreamingMode.UNARY, StreamingMode.NONE))
        ri = self._new_rpcinfo(mi, opts, self._unary_configs.get(method, self._unary_config))
        if self._options.timeout_provider is not None:
            self._provide_timeouts(ri, opts)
        if mi.pack_request is not None:
            request = mi.pack_request(request)
        endpoint = self._unary if self._plain and not ri.extra else self._governed
        reply = await run_traced(endpoint, ri, request, self._tracer)
        if mi.unpack_response is not None and not mi.oneway:
            return mi.unpack_response(reply)
        return reply

    def server_stream(self, method: str, request: Any, *opts: _callopt.CallOption) -> ServerStreamCall[Any]:
        """Start a server-streaming call; iterate the result for the replies."""
        mi = self._method(method, (StreamingMode.SERVER,))
        ri = self._new_rpcinfo(mi, opts)

        async def open_stream() -> Stream[Any, Any]:
            stream: Stream[Any, Any] = await self._open(ri, Stream, StreamArgs(request))
            await stream.send(request)
            await stream.close_send()
            return stream

        return ServerStreamCall(open_stream)

    async def client_stream(self, method: str, *opts: _callopt.CallOption) -> ClientStreamCall[Any, Any]:
        """Open a client-streaming call: ``send`` requests, then ``close_and_recv``."""
        mi = self._method(method, (StreamingMode.CLIENT,))
        stream: ClientStreamCall[Any, Any] = await self._open(self._new_rpcinfo(mi, opts), ClientStreamCall)
        return stream

    async def bidi_stream(self, method: str, *opts: _callopt.CallOption) -> BidiStreamCall[Any, Any]:
        """Open a bidirectional stream."""
        mi = self._method(method, (StreamingMode.BIDIRECTIONAL,))
        stream: BidiStreamCall[Any, Any] = await self._open(self._new_rpcinfo(mi, opts), BidiStreamCall)
        return stream

    async def _open(self, ri: RPCInfo, kind: type[Any], args: StreamArgs | None = None) -> Any:
        tracer = self._tracer
        if tracer is not None:
            tracer.start(ri)
        try:
            io: StreamIO = await self._stream(ri, args or StreamArgs())
        except BaseException as exc:
            ri.stats.finish(exc)
            if tracer is not None:
                tracer.finish(ri)
            raise
        opts = self._options
        return kind(
            ri, io, opts.stream_send_middlewares, opts.stream_recv_middlewares, self._on_stream_finish
        )

    async def _governed(self, ri: RPCInfo, request: Any) -> Any:
        """A unary call with a per-call retry policy or a fallback (Kitex ``kClient.Call``)."""
        endpoint = self._unary
        if self.retry is None and CALL_POLICY_KEY in ri.extra:
            # callopt.with_retry_policy on a client without retry options: a container for such calls
            if self._adhoc_unary is None:
                container = RetryContainer()
                self._adhoc_unary = chain(
                    [container.middleware, *self._middleware_list], self._transport.unary
                )
            endpoint = self._adhoc_unary
        policy = ri.extra.get(CALL_FALLBACK_KEY) or self._options.fallback
        if policy is None:
            return await endpoint(ri, request)
        try:
            reply = await endpoint(ri, request)
        except Exception as exc:
            return await policy.run(ri, request, None, exc)
        return await policy.run(ri, request, reply, None)

    async def warm_up(self) -> None:
        """Resolve (and with ``connect``, dial) the destination now (Kitex ``WithWarmingUp``).

        Started by ``new_client`` when ``with_warming_up`` is set and an event loop is running;
        otherwise await it yourself. Failures follow the option's ``error_handling``.
        """
        option = self._options.warming_up
        if option is None:
            return
        if self._warmup is not None and self._warmup is not asyncio.current_task():
            await self._warmup
            return
        for dest in (self._dest, *option.dests):
            try:
                await self.discovery.warm_up(
                    EndpointInfo(dest, "", "", dict(self._tags)),
                    option.connect,
                    self._options.connect_timeout,
                    option.conn_num,
                )
            except Exception as exc:
                option.handle(exc)

    async def _transport_stream(self, ri: RPCInfo, _args: StreamArgs) -> StreamIO:
        return await self._transport.open_stream(ri)

    # -- plumbing -------------------------------------------------------------------------------------

    def _method(self, name: str, modes: tuple[StreamingMode, ...]) -> MethodInfo:
        mi = method_for_call(self._service, name, modes)
        if self._closed:
            raise InternalError("client is closed")
        return mi

    def _new_rpcinfo(
        self, mi: MethodInfo, opts: tuple[_callopt.CallOption, ...], config: RPCConfig | None = None
    ) -> RPCInfo:
        if config is None:
            config = self._stream_config if mi.mode.is_streaming else self._unary_config
        callee = EndpointInfo(self._dest, mi.name, "", self._tags)
        if not opts:
            return RPCInfo(self._caller, callee, self._service, mi, config)
        co = _callopt.apply_all(opts)
        if co.rpc_timeout_set or co.connect_timeout is not None or co.compression is not None:
            config = RPCConfig(
                co.rpc_timeout if co.rpc_timeout_set else config.rpc_timeout,
                co.connect_timeout if co.connect_timeout is not None else config.connect_timeout,
                config.transport_protocol,
                co.compression or config.compression,
                config.rpc_timeout_set or (co.rpc_timeout_set and co.rpc_timeout is not None),
            )
        if co.host_port is not None:
            callee.address = co.host_port
        if co.tags:
            callee.tags = {**self._tags, **co.tags}
        ri = RPCInfo(self._caller, callee, self._service, mi, config, co.metadata)
        if co.retry_policy is not None:
            ri.extra[CALL_POLICY_KEY] = co.retry_policy
        if co.fallback is not None:
            ri.extra[CALL_FALLBACK_KEY] = co.fallback
        # The transports extend these lists in place: the caller's lists fill as the call goes.
        if co.grpc_header is not None:
            ri.response_headers = co.grpc_header
        if co.grpc_trailer is not None:
            ri.response_trailers = co.grpc_trailer
        return ri

    def _provide_timeouts(self, ri: RPCInfo, opts: tuple[_callopt.CallOption, ...]) -> None:
        """``with_timeout_provider``: the call's timeouts, unless code or a call option set them."""
        provider = self._options.timeout_provider
        assert provider is not None
        timeouts = provider(ri)
        if timeouts is None:
            return
        co = _callopt.apply_all(opts) if opts else None
        live = self.live
        cfg = ri.config
        rpc = timeouts.rpc_timeout
        if live.rpc_timeout_locked or (co is not None and co.rpc_timeout_set):
            rpc = cfg.rpc_timeout
        conn = timeouts.connect_timeout
        if conn is None or live.connect_timeout_locked or (co is not None and co.connect_timeout is not None):
            conn = cfg.connect_timeout
        ri.config = RPCConfig(
            rpc, conn, cfg.transport_protocol, cfg.compression, cfg.rpc_timeout_set or rpc is not None
        )

    async def close(self) -> None:
        """Close every connection; calls made afterwards fail with InternalError."""
        if not self._closed:
            self._closed = True
            if self._config_watch is not None:
                await self._config_watch.close()
            if self._warmup is not None and not self._warmup.done():
                self._warmup.cancel()
            await self.discovery.close()
            await self._transport.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _name(middleware: object) -> str:
    return str(
        getattr(middleware, "__qualname__", None) or getattr(middleware, "__name__", None) or middleware
    )


def _unchanged(next_endpoint: Endpoint) -> Endpoint:
    """A middleware slot with nothing to do: the next endpoint itself."""
    return next_endpoint
