"""The worker side of ``with_workers``: a program started by the supervisor serves as one worker.

The supervisor (:mod:`kitex_grpc.server.workers`) starts the same program again with
:data:`WORKER_ENV` set to a JSON description of the worker; that program's ``Server.run()`` then
comes here instead of supervising. The worker:

- adapts the user's server: it serves the listening sockets it inherited (or, on GRPC, binds the
  parent's resolved address with ``grpc.so_reuseport``), registers with no registry (the parent
  registers the address once), serves its metrics on a private loopback port that the parent
  scrapes, and divides the limits by the worker count when asked;
- tells the parent over its IPC socket (a socketpair; one JSON object per line) ``ready`` with its
  metrics address, or ``error`` when starting failed, and at exit ``final`` with its last metrics;
- stops (draining, within the exit wait time) on SIGTERM or SIGINT, and when the parent goes away:
  the IPC socket reaches EOF, and on Linux ``PR_SET_PDEATHSIG`` sends SIGTERM as the parent dies,
  so no worker outlives its parent, even one killed with SIGKILL. SIGHUP is the parent's (rolling
  restart) and is ignored here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from kitex_grpc.observability.http_endpoint import HTTPEndpoint

if TYPE_CHECKING:
    from kitex_grpc.server.server import Server

__all__ = ["WORKER_ENV", "WorkerSpec", "metrics_endpoints", "serve_as_worker", "take_spec"]

WORKER_ENV = "KITEX_GRPC_WORKER"
_log = logging.getLogger("kitex_grpc.server.workers")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the supervisor tells a worker (through :data:`WORKER_ENV`)."""

    slot: int
    count: int
    parent: int
    ipc_fd: int
    listen_fds: tuple[int, ...] = ()
    grpc_address: str = ""  # GRPC: bind this with grpc.so_reuseport instead of inheriting sockets
    divide_limits: bool = False

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def take_spec() -> WorkerSpec | None:
    """The worker description from the environment, removed from it (so that programs this worker
    starts are not workers), or ``None`` in a program that is not a worker."""
    text = os.environ.pop(WORKER_ENV, None)
    if text is None:
        return None
    raw = json.loads(text)
    raw["listen_fds"] = tuple(raw.get("listen_fds", ()))
    return WorkerSpec(**raw)


def metrics_endpoints(hooks: tuple[Any, ...]) -> list[HTTPEndpoint]:
    """The Prometheus pages among a server's hooks (``with_metrics_endpoint``: OpenTelemetry's or
    Kitex's series); at most one, as that option allows."""
    return [hook for hook in hooks if isinstance(hook, HTTPEndpoint) and hook.metrics_path is not None]


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``); if it already has, now."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl: nobody would send the signal
        raise SystemExit("kitex-grpc worker: the supervisor is gone; not starting")


def divided(limit: Any, count: int) -> Any:
    """Per-worker limits from totals: ``ceil(total / count)`` for each limit set (0 stays unlimited)."""
    values = {
        f.name: math.ceil(getattr(limit, f.name) / count) if getattr(limit, f.name) else 0
        for f in dataclasses.fields(limit)
    }
    return dataclasses.replace(limit, **values)


def _adapt(server: Server, spec: WorkerSpec) -> list[HTTPEndpoint]:
    from kitex_grpc.health.http_probes import HTTPProbes

    opts = server.options
    changes: dict[str, Any] = {"registry": None, "workers": None}
    if spec.grpc_address:
        changes["service_addr"] = spec.grpc_address
        changes["grpcio_server_options"] = (*opts.grpcio_server_options, ("grpc.so_reuseport", 1))
    else:
        changes["listeners"] = tuple(socket.socket(fileno=fd) for fd in spec.listen_fds)
    # A worker serves its metrics on a private loopback port the supervisor scrapes and merges; the
    # HTTP probes are the supervisor's alone (N workers cannot bind one probe port).
    endpoints = [e.moved_to("127.0.0.1:0") for e in metrics_endpoints(opts.hooks)]
    swap: dict[int, Any] = dict(zip(map(id, metrics_endpoints(opts.hooks)), endpoints, strict=True))
    changes["hooks"] = tuple(swap.get(id(h), h) for h in opts.hooks if not isinstance(h, HTTPProbes))
    server.reconfigure(**changes)
    if spec.divide_limits and server.limiter is not None:
        server.limiter.update(divided(server.limiter.option, spec.count))
    return endpoints


async def serve_as_worker(server: Server, spec: WorkerSpec) -> None:
    """Serve ``server`` as worker ``spec.slot`` until told to stop; see the module docstring."""
    _die_with_parent(spec.parent)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=spec.ipc_fd))

    async def tell(**message: Any) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    try:
        endpoints = _adapt(server, spec)
        await server.start()
    except BaseException as exc:
        await tell(error=f"{type(exc).__name__}: {exc}")
        raise
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)

    async def parent_gone() -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass
        if not stop.is_set():
            _log.warning("worker %d (pid %d): the supervisor is gone; stopping", spec.slot, os.getpid())
            stop.set()

    watcher = loop.create_task(parent_gone())
    metrics = endpoints[0].address if endpoints else ""
    await tell(ready=os.getpid(), address=server.address, metrics=metrics)
    try:
        await stop.wait()
    finally:
        await server.stop()
        for endpoint in endpoints:  # at most one
            _, _, page = await endpoint.answer(endpoint.metrics_path or "")
            await tell(final=page.decode())
        watcher.cancel()
        writer.close()
