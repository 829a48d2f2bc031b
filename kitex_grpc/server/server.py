"""The server: registered services, one chain built once, and a transport that feeds it.

Chain, outermost first (ARCHITECTURE.md; Kitex ``server/server.go buildMiddlewares``)::

    [transport: protocol detection and limits per connection]
    limit                       max connections / QPS / concurrency (with_limit, ...), at the front
    server_timeout              deadline from grpc-timeout / TTHeader RPCTimeout
    user middlewares            in option order
    acl                         (with_acl_rules)
    handler_error               ordinary exceptions -> BizError; BizStatusError passes through
    handler

The transport maps what comes out (KitexError, BizStatusError) to its wire status. Transports call
into the server's :class:`~kitex_grpc.server.dispatch.Dispatcher`, which holds the
registered methods and runs the chain.

With ``with_registry`` the server registers once it is listening (after the serving hooks) and
deregisters first when it stops, before draining (Kitex ``server/server.go`` Run/Stop).

Tracers run outside the chain (``start`` before it, ``finish`` after the handler); without one the
hook is a ``None`` test. Lifecycle hooks (health, metrics endpoint) see prepare -> serving in
``start()`` and draining -> stopped in ``stop()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

from kitex_grpc.config.live import LiveServerConfig
from kitex_grpc.config.model import LIMIT
from kitex_grpc.config.source import ConfigKey
from kitex_grpc.config.watch import ConfigWatch
from kitex_grpc.discovery.registry import Info, registry_address
from kitex_grpc.endpoint import Middleware, chain
from kitex_grpc.errors import StatusError
from kitex_grpc.governance.acl import acl_middleware
from kitex_grpc.governance.limiter import LimitOption, ServerLimiter
from kitex_grpc.observability.tracer import compose
from kitex_grpc.options.server import ServerOptions
from kitex_grpc.rpcinfo import RPCConfig, RPCInfo
from kitex_grpc.server.dispatch import Dispatcher, unary_invoker
from kitex_grpc.server.middlewares import handler_error_middleware, server_timeout_middleware
from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo, StreamingMode
from kitex_grpc.status import StatusCode
from kitex_grpc.streaming import Stream
from kitex_grpc.transport import new_server_transport
from kitex_grpc.transport.base import ServerTransport

_log = logging.getLogger("kitex_grpc.server")


class Server:
    """A server. Make it with :func:`kitex_grpc.new_server`, then :meth:`register_service`."""

    def __init__(self, options: ServerOptions) -> None:
        self._options = options
        self._transport: ServerTransport | None = None
        # What the transports call into: the registered methods and the chain.
        self._dispatch = Dispatcher(
            options.service_name,
            RPCConfig(None, 0.0, options.transport_protocol),
            options.stream_send_middlewares,
            options.stream_recv_middlewares,
        )
        self._services = self._dispatch.services
        named = self._middlewares()
        self.chain_names: tuple[str, ...] = (*(name for name, _ in named), "handler")
        self._dispatch.endpoint = chain([mw for _, mw in named], self._dispatch.invoke)
        self._dispatch.tracer = compose(options.tracers)
        self._stopped = asyncio.Event()
        self._serving = False
        self._registered: Info | None = None
        self._in_registry = False  # register() returned and stop() has not begun (readiness)

    def _middlewares(self) -> list[tuple[str, Middleware]]:
        opts = self._options
        named: list[tuple[str, Middleware]] = []
        self.limiter: ServerLimiter | None = None
        self.live: LiveServerConfig | None = None
        self._config_watch: ConfigWatch | None = None
        if opts.config_sources:  # live limits: the limiter is in the chain even while unlimited
            code = opts.limit or LimitOption()
            self.limiter = ServerLimiter(code, reporter=opts.limit_reporter, live=True)
            self.live = LiveServerConfig(self.limiter, code)
            named.append(("limit", self.limiter.middleware))
        elif opts.limit is not None and opts.limit.enabled:
            self.limiter = ServerLimiter(opts.limit, reporter=opts.limit_reporter)
            named.append(("limit", self.limiter.middleware))
        named.append(("server_timeout", server_timeout_middleware))
        named.extend((f"user:{_name(mw)}", mw) for mw in opts.middlewares)
        if opts.acl_rules:
            named.append(("acl", acl_middleware(opts.acl_rules)))
        named.append(("handler_error", handler_error_middleware))
        return named

    @property
    def options(self) -> ServerOptions:
        return self._options

    @property
    def services(self) -> tuple[ServiceInfo, ...]:
        """The registered services, in registration order."""
        return tuple(self._services.values())

    @property
    def serving(self) -> bool:
        """True between a successful ``start()`` and the beginning of ``stop()``."""
        return self._serving

    @property
    def registered(self) -> bool:
        """Whether this server is in its registry (always True without ``with_registry``): False until
        registration after start, and again from the moment ``stop()`` begins."""
        return self._options.registry is None or self._in_registry

    def describe(self) -> str:
        """The effective configuration, readable: options as recorded, the chain, services, hooks."""
        from kitex_grpc.observability.diagnostics import describe_server

        return describe_server(self)

    @property
    def address(self) -> str:
        """The bound ``host:port`` once started."""
        if self._transport is None:
            raise RuntimeError("server is not started")
        return self._transport.address

    def register_service(self, service: ServiceInfo, handler: object) -> Server:
        """Serve ``service`` with ``handler`` (an object with one async method per RPC). Returns self."""
        if self._transport is not None:
            raise RuntimeError("register_service must be called before start()")
        if service.service_name in self._services:
            raise ValueError(f"service {service.service_name!r} is already registered")
        self._services[service.service_name] = service
        for method in service.methods.values():
            fn = getattr(handler, method.name, None)
            invoke = _adapter(method, fn) if callable(fn) else _unimplemented(method)
            self._dispatch.register(service, method, invoke)
        return self

    @property
    def dispatcher(self) -> Dispatcher:
        """What this server's transports call into for each request (``CallDispatcher``)."""
        return self._dispatch

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving. Returns once the server accepts connections."""
        if self._transport is not None:
            raise RuntimeError("server already started")
        if not self._services and self._dispatch.unknown is None:
            raise RuntimeError("no service registered: call register_service() first")
        hooks = self._options.hooks
        prepared: list[Any] = []
        try:
            for hook in hooks:
                await hook.prepare(self)
                prepared.append(hook)
            await self._watch_config()
            self._transport = new_server_transport(self._options, self._dispatch)
            limiter = self.limiter
            if limiter is not None and limiter.connections is not None:
                limit_connections = getattr(self._transport, "limit_connections", None)
                if limit_connections is not None:  # the transport counts its own connections
                    limit_connections(limiter.connections)
                    limiter.count_peers = False
            await self._transport.start()
        except BaseException:
            # A failed start (a port taken, a config source not ready) releases what the hooks
            # already bound (probe and metrics ports), so the process can retry or exit cleanly.
            self._transport = None
            if self._config_watch is not None:
                watch, self._config_watch = self._config_watch, None
                await watch.close()
            for hook in reversed(prepared):
                try:
                    await hook.stopped(self)
                except Exception as exc:
                    _log.warning("server start failed; closing %r failed too: %r", hook, exc)
            raise
        self._serving = True
        for hook in hooks:
            await hook.serving(self)
        await self._register()

    async def stop(self) -> None:
        """Stop accepting; let in-flight calls finish within the exit wait time; then close."""
        if self._transport is None or not self._serving:
            return
        self._serving = False
        await self._deregister()
        hooks = self._options.hooks[::-1]
        for hook in hooks:
            await hook.draining(self)
        try:
            await self._transport.stop(self._options.exit_wait_time)
            if self._config_watch is not None:
                await self._config_watch.close()
        finally:
            for hook in hooks:
                await hook.stopped(self)
            self._stopped.set()

    async def _watch_config(self) -> None:
        """Watch the config sources' ``limit`` key; wait up to 5 s for its first read (as Kitex's suite)."""
        opts = self._options
        if not opts.config_sources or self.live is None:
            return
        if not opts.service_name:
            raise RuntimeError("with_config_source needs the server's name: add with_server_basic_info")
        key = ConfigKey("server", LIMIT, "", opts.service_name)
        self._config_watch = ConfigWatch([(s, key) for s in opts.config_sources], self.live.apply)
        if not await self._config_watch.ready(5.0):
            _log.warning("config: the limit key was not read within 5 s; serving with the code's limits")

    def registry_info(self, address: str | None = None) -> Info:
        """What ``with_registry`` publishes: ``with_registry_info`` completed with this server's facts
        (``address``: the listen address, by default the bound one; a workers' supervisor gives its own)."""
        opts = self._options
        info = opts.registry_info
        name = opts.service_name or next(iter(self._services), "")
        codec = next(iter(self._services.values())).payload_codec.name.lower() if self._services else ""
        listen = self.address if address is None else address
        if info is None:
            return Info(name, registry_address(listen), codec)
        if not info.addr:
            info = dataclasses.replace(info, addr=registry_address(listen))
        return info if info.service_name else dataclasses.replace(info, service_name=name)

    async def _register(self) -> None:
        if self._options.registry is not None:
            self._registered = self.registry_info()
            await self._options.registry.register(self._registered)
            self._in_registry = self._serving

    async def _deregister(self) -> None:
        registered, self._registered = self._registered, None
        self._in_registry = False
        if self._options.registry is not None and registered is not None:
            try:
                await self._options.registry.deregister(registered)
            except Exception as exc:  # stopping goes on: the lease (if any) expires by itself
                _log.warning("deregister %s failed: %r", registered.service_name, exc)

    async def run(self) -> None:
        """Serve until SIGINT or SIGTERM (or :meth:`stop`), then drain and stop.

        Starts the server first unless :meth:`start` was already awaited. With ``with_workers`` (and
        not yet started) this process supervises worker processes instead, each of which runs this
        same program up to its own ``run()`` and serves there (:mod:`kitex_grpc.server.workers`).
        """
        if self._transport is None and (self._options.workers is not None or _worker_env()):
            from kitex_grpc.server.workers import run_workers

            await run_workers(self)
            return
        if self._transport is None:
            await self.start()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
        try:
            await self._stopped.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def reconfigure(self, **changes: Any) -> None:
        """Replace option fields before :meth:`start` (a worker process adapts the user's server:
        its sockets, no registry, a private metrics endpoint). Fields read only in ``__init__``
        (middlewares, limits, tracers) do not change."""
        if self._transport is not None:
            raise RuntimeError("reconfigure must be called before start()")
        self._options = dataclasses.replace(self._options, **changes)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _worker_env() -> bool:
    from kitex_grpc.server.worker import WORKER_ENV

    return WORKER_ENV in os.environ


def _name(middleware: object) -> str:
    return str(
        getattr(middleware, "__qualname__", None) or getattr(middleware, "__name__", None) or middleware
    )


def _unimplemented(method: MethodInfo) -> Callable[[RPCInfo, Any], Any]:
    async def invoke(ri: RPCInfo, request: Any) -> Any:
        raise StatusError(StatusCode.UNIMPLEMENTED, f"method {method.name} is not implemented")

    return invoke


async def _requests(stream: Stream[Any, Any]) -> AsyncIterator[Any]:
    while True:
        try:
            yield await stream.recv()
        except EOFError:
            return


def _adapter(method: MethodInfo, fn: Callable[..., Any]) -> Callable[[RPCInfo, Any], Any]:
    """Bridge the handler's natural Python shape to the endpoint's (ri, request-or-stream)."""
    mode = method.mode
    if mode in (StreamingMode.UNARY, StreamingMode.NONE):
        return unary_invoker(method, fn)
    if mode is StreamingMode.SERVER:

        async def server_streaming(ri: RPCInfo, stream: Stream[Any, Any]) -> None:
            try:
                request = await stream.recv()
            except EOFError:
                raise StatusError(StatusCode.INTERNAL, "server-streaming call without a request") from None
            async for reply in fn(request):
                await stream.send(reply)

        return server_streaming
    if mode is StreamingMode.CLIENT:

        async def client_streaming(ri: RPCInfo, stream: Stream[Any, Any]) -> None:
            reply = await fn(_requests(stream))
            await stream.send(reply)

        return client_streaming

    async def bidi_streaming(ri: RPCInfo, stream: Stream[Any, Any]) -> None:
        async for reply in fn(_requests(stream)):
            await stream.send(reply)

    return bidi_streaming
