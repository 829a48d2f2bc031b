"""Serving from N worker processes on one address: the supervisor (``with_workers``, ``kitex-grpc serve``).

Processes, not threads: Python runs one thread of Python at a time, so a server uses more than one
core only with more processes. Workers are started with :mod:`asyncio`'s subprocess support, which
on POSIX forks and at once executes a fresh interpreter: this process runs an event loop and,
with GRPC, grpcio's threads, and a fork that went on running Python after those exist would inherit
locks held by threads that do not exist in the child (why ``multiprocessing`` moved away from plain
``fork``). A fresh interpreter has no such state; the price is that the worker builds its server
again, so it runs this same program (``sys.orig_argv``) with :data:`~kitex_grpc.server.worker.WORKER_ENV`
set, and its ``Server.run()`` serves as a worker (:mod:`kitex_grpc.server.worker`).

The parent binds the address first (:mod:`kitex_grpc.server.listen`: an unusable address or a port
in use fails here, before any worker), starts every worker and waits for each to say it is ready
(a worker that fails or exits first fails the whole start: the others are stopped, the error is
raised), registers the address once with ``with_registry``, serves the merged ``/metrics``
(:mod:`kitex_grpc.server.metrics_hub`), and then:

- a worker that exits on its own is restarted after a back-off (:mod:`kitex_grpc.server.supervisor`),
  each restart logged with the worker's exit status;
- SIGHUP rolls the workers one at a time: a new worker for slot i starts on slot i's sockets, and
  once it is ready the old one gets SIGTERM and drains; the listening sockets stay open throughout,
  so no connection is refused;
- SIGTERM or SIGINT drains: deregister, SIGTERM to every worker (each stops accepting, finishes its
  in-flight calls within the exit wait time, then exits), SIGKILL to any still running after the
  exit wait time plus :data:`KILL_GRACE`, then return.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from kitex_grpc.observability.http_endpoint import HTTPEndpoint, Reply
from kitex_grpc.server.listen import ListenPlan, bind_plan
from kitex_grpc.server.metrics_hub import MetricsHub
from kitex_grpc.server.supervisor import Supervisor, describe_exit
from kitex_grpc.server.worker import WORKER_ENV, WorkerSpec, metrics_endpoints, serve_as_worker, take_spec
from kitex_grpc.transport_protocol import TransportProtocol

if TYPE_CHECKING:
    from kitex_grpc.options.server import WorkersOption
    from kitex_grpc.server.server import Server

__all__ = ["KILL_GRACE", "WorkerPool", "WorkersError", "run_workers"]

_log = logging.getLogger("kitex_grpc.server.workers")
KILL_GRACE = 3.0  # past the exit wait time: the worker's own cancel grace, then process exit
_IPC_LIMIT = 64 << 20  # a worker's last metrics page travels in one line
IPC_DRAIN = 1.0  # seconds to read an exited worker's last lines
_TEXT = "text/plain; charset=utf-8"


class WorkersError(RuntimeError):
    """The workers could not be started (the message says which and why)."""


class _Worker:
    def __init__(self, slot: int, proc: asyncio.subprocess.Process, sockets: list[socket.socket]) -> None:
        self.slot = slot
        self.proc = proc
        self.sockets = sockets
        self.started = time.monotonic()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
        self.error = ""
        self.metrics = ""
        self.final = ""
        self.retiring = False
        self.exited = asyncio.Event()
        self.ipc_done = asyncio.Event()

    @property
    def pid(self) -> int:
        return self.proc.pid


def worker_command() -> list[str]:
    """This program's command line, run by this interpreter (``python -m x``, ``-c`` and scripts)."""
    argv = list(sys.orig_argv)
    if not argv or (len(argv) == 1 and not sys.argv[0]):
        raise WorkersError("workers: the program cannot be started again (an interactive interpreter)")
    return [sys.executable, *argv[1:]]


class WorkerPool:
    """The supervisor of one server's workers (see the module docstring)."""

    def __init__(self, server: Server, option: WorkersOption, command: list[str] | None = None) -> None:
        self.server = server
        self.option = option
        self.count = option.count
        self.command = command or worker_command()
        self.supervisor = Supervisor(option.count)
        self.current: list[_Worker | None] = [None] * option.count
        self.plan: ListenPlan | None = None
        self.hub: MetricsHub | None = None
        self.probes: HTTPEndpoint | None = None
        self.phase = "starting"  # starting -> serving -> draining: what /readyz reports
        self.address = ""
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._roll: asyncio.Task[None] | None = None
        self._roll_again = False
        self._extra: list[_Worker] = []  # workers being replaced by a roll
        self.rolls = 0

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.current if w is not None]

    # -- starting workers ---------------------------------------------------------------------------

    async def _spawn(self, slot: int, sockets: list[socket.socket]) -> _Worker:
        assert self.plan is not None
        parent_end, child_end = socket.socketpair()
        spec = WorkerSpec(
            slot=slot,
            count=self.count,
            parent=os.getpid(),
            ipc_fd=child_end.fileno(),
            listen_fds=tuple(s.fileno() for s in sockets),
            grpc_address=self.plan.address if self.plan.kind == "grpcio" else "",
            divide_limits=self.option.divide_limits,
        )
        env = {**os.environ, WORKER_ENV: spec.to_env()}
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
                pass_fds=(child_end.fileno(), *spec.listen_fds),
            )
        finally:
            child_end.close()
        worker = _Worker(slot, proc, sockets)
        reader, writer = await asyncio.open_unix_connection(sock=parent_end, limit=_IPC_LIMIT)
        self._track(self._read(worker, reader))
        self._track(self._watch(worker, writer))
        return worker

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, ValueError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                message = json.loads(line)
                if "ready" in message:
                    worker.metrics = message.get("metrics") or ""
                    if not worker.ready.done():
                        worker.ready.set_result(None)
                elif "error" in message:
                    worker.error = str(message["error"])
                elif "final" in message:
                    worker.final = str(message["final"])
        worker.ipc_done.set()

    async def _watch(self, worker: _Worker, writer: asyncio.StreamWriter) -> None:
        """Wait for the worker's exit; restart it when it was not told to stop."""
        code = await worker.proc.wait()
        # The last lines (final metrics) were sent before the exit: read to EOF (bounded, in case
        # a process the worker started holds its end) before closing ours.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(IPC_DRAIN):
                await worker.ipc_done.wait()
        writer.close()
        worker.exited.set()
        if not worker.ready.done():
            reason = worker.error or f"it exited ({describe_exit(code)}) before it was ready"
            worker.ready.set_exception(WorkersError(f"worker {worker.slot} failed to start: {reason}"))
        if worker.final and self.hub is not None:
            self.hub.retire(worker.final)
        decision = self.supervisor.worker_exited(
            worker.slot, time.monotonic() - worker.started, expected=worker.retiring
        )
        if not decision.restart or self.current[worker.slot] is not worker:
            return
        self.current[worker.slot] = None
        _log.warning(
            "worker %d (pid %d) exited unexpectedly (%s) after %.1fs; restarting in %.1fs "
            "(quick failure %d of this slot in a row)",
            worker.slot, worker.pid, describe_exit(code), time.monotonic() - worker.started,
            decision.delay, decision.failures,
        )  # fmt: skip
        self._track(self._restart(worker, decision.delay))

    async def _restart(self, dead: _Worker, delay: float) -> None:
        await asyncio.sleep(delay)  # the back-off (a timer, not synchronisation)
        if self._stop.is_set() or self.current[dead.slot] is not None:
            return
        assert self.plan is not None
        sockets = dead.sockets
        if self.plan.kind == "reuseport":  # the dead worker's queue: reset; fresh sockets for the slot
            for sock in sockets:
                sock.close()
            sockets = self.plan.slot_sockets()
        try:
            worker = await self._spawn(dead.slot, sockets)
        except OSError as exc:
            _log.error("worker %d: cannot start a process: %s", dead.slot, exc)
            return
        self.current[dead.slot] = worker
        try:
            async with asyncio.timeout(self.option.startup_timeout):
                await asyncio.shield(worker.ready)
        except (WorkersError, TimeoutError) as exc:
            _log.error("worker %d (pid %d): %s", dead.slot, worker.pid, exc or "not ready in time")
            if not worker.exited.is_set():
                worker.proc.kill()  # its _watch restarts it, with a longer back-off
            return
        _log.info("worker %d restarted: pid %d", dead.slot, worker.pid)

    async def _start_all(self) -> None:
        assert self.plan is not None
        for slot in range(self.count):
            self.current[slot] = await self._spawn(slot, self.plan.slot_sockets())
        workers = [w for w in self.current if w is not None]
        try:
            async with asyncio.timeout(self.option.startup_timeout):
                for w in workers:
                    await asyncio.shield(w.ready)
        except TimeoutError:
            late = [w.slot for w in workers if not w.ready.done()]
            raise WorkersError(
                f"workers {late} not ready within {self.option.startup_timeout:.0f}s "
                "(with_workers startup_timeout)"
            ) from None
        self.supervisor.serving = True

    # -- the supervisor's life ----------------------------------------------------------------------

    async def run(self, on_ready: Callable[[WorkerPool], None] | None = None) -> None:
        """Bind, start the workers, serve until SIGTERM/SIGINT, then drain (raises WorkersError)."""
        opts = self.server.options
        try:
            self.plan = bind_plan(
                opts.service_addr,
                grpcio=opts.transport_protocol is TransportProtocol.GRPC,
                reuse_port=self.option.reuse_port,
            )
        except OSError as exc:
            raise WorkersError(str(exc.strerror or exc)) from None
        self.address = self.plan.address
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for sig in signals[:2]:
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.roll)
        registered = None
        try:
            await self._start_probes()
            await self._start_all()
            endpoints = metrics_endpoints(opts.hooks)
            if endpoints:
                self.hub = MetricsHub(
                    endpoints[0].requested,
                    # the workers being replaced too, until they exit and their counts are retired
                    lambda: [w.metrics for w in self._all_workers() if w.metrics and not w.exited.is_set()],
                    lambda: self.supervisor.restarts,
                    path=endpoints[0].metrics_path or "/metrics",
                )
                await self.hub.start()
            if opts.registry is not None:
                registered = self.server.registry_info(self.address)
                await opts.registry.register(registered)
            self.phase = "serving"
            _log.info(
                "serving %s (%s) with %d workers: pids %s%s",
                self.address, opts.transport_protocol.name, self.count,
                " ".join(map(str, self.pids)), f"; metrics on {self.hub.address}" if self.hub else "",
            )  # fmt: skip
            if on_ready is not None:
                on_ready(self)
            await self._stop.wait()
            _log.info("draining %d workers (exit wait time %.1fs)", self.count, opts.exit_wait_time)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if registered is not None and opts.registry is not None:
                try:
                    await opts.registry.deregister(registered)
                except Exception as exc:  # stopping goes on: the lease (if any) expires by itself
                    _log.warning("deregister %s failed: %r", registered.service_name, exc)
            await self._drain()

    async def _start_probes(self) -> None:
        """``with_http_probes`` under workers: the supervisor answers them for the whole server, alive
        from here until the drain ends, ready once every worker is serving and the address registered."""
        from kitex_grpc.health.http_probes import HTTPProbes

        probes = next((h for h in self.server.options.hooks if isinstance(h, HTTPProbes)), None)
        if probes is None:
            return
        self.probes = HTTPEndpoint(
            probes.endpoint.requested,
            {"/healthz": lambda: (200, _TEXT, b"ok\n"), "/readyz": self._readyz},
            what="http probes",
        )
        await self.probes.start()

    def _readyz(self) -> Reply:
        ready = self.phase == "serving" and not self._stop.is_set()
        return (200, _TEXT, b"ready\n") if ready else (503, _TEXT, f"{self.phase}\n".encode())

    async def _drain(self) -> None:
        self.phase = "draining"
        self._stop.set()
        self.supervisor.draining = True
        if self._roll is not None:
            self._roll.cancel()
        live = [w for w in self._all_workers() if not w.exited.is_set()]
        for w in live:
            w.retiring = True
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
        await self._reap(live, self.server.options.exit_wait_time + KILL_GRACE)
        if self.hub is not None:
            await self.hub.close()
        if self.probes is not None:
            await self.probes.close()
        if self.plan is not None:
            for slot_worker in self.current:
                if slot_worker is not None and self.plan.kind == "reuseport":
                    for sock in slot_worker.sockets:
                        sock.close()
            self.plan.close()
        for task in list(self._tasks):
            task.cancel()

    def _all_workers(self) -> list[_Worker]:
        seen = {id(w): w for w in self.current if w is not None}
        for w in self._extra:
            seen.setdefault(id(w), w)
        return list(seen.values())

    async def _reap(self, workers: list[_Worker], grace: float) -> None:
        if not workers:
            return
        waits = [asyncio.ensure_future(w.exited.wait()) for w in workers]
        await asyncio.wait(waits, timeout=grace)
        for w in workers:
            if not w.exited.is_set():
                _log.warning("worker %d (pid %d) still running after %.1fs: killing it", w.slot, w.pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
        await asyncio.wait(waits)

    # -- rolling restart (SIGHUP) -----------------------------------------------------------------------

    def roll(self) -> None:
        """Replace every worker, one at a time (SIGHUP); a roll asked for during a roll runs after it."""
        if self._stop.is_set() or not self.supervisor.serving:
            return
        if self._roll is not None and not self._roll.done():
            self._roll_again = True
            return
        self._roll = asyncio.ensure_future(self._rolling())

    async def _rolling(self) -> None:
        while True:
            self._roll_again = False
            _log.info("rolling %d workers", self.count)
            for slot in range(self.count):
                old = self.current[slot]
                if old is None:
                    continue  # crashed and waiting for its restart: that restart is the new worker
                new = await self._spawn(slot, old.sockets)
                try:
                    async with asyncio.timeout(self.option.startup_timeout):
                        await asyncio.shield(new.ready)
                except (WorkersError, TimeoutError) as exc:
                    _log.error("roll stopped: the new worker %d did not start: %s", slot, exc or "timeout")
                    new.retiring = True
                    if not new.exited.is_set():
                        new.proc.kill()
                    return
                self.current[slot] = new
                old.retiring = True
                self._extra.append(old)
                with contextlib.suppress(ProcessLookupError):
                    old.proc.send_signal(signal.SIGTERM)
                await self._reap([old], self.server.options.exit_wait_time + KILL_GRACE)
                self._extra.remove(old)
                _log.info("worker %d rolled: pid %d -> %d", slot, old.pid, new.pid)
            self.rolls += 1
            _log.info("roll done: pids %s", " ".join(map(str, self.pids)))
            if not self._roll_again:
                return


async def run_workers(server: Server, on_ready: Callable[[WorkerPool], None] | None = None) -> None:
    """``Server.run()`` with workers: serve as the worker this process is, or supervise."""
    spec = take_spec()
    if spec is not None:
        await serve_as_worker(server, spec)
        return
    option = server.options.workers
    if option is None:
        from kitex_grpc.options.server import WorkersOption, usable_cores

        option = WorkersOption(usable_cores())
    await WorkerPool(server, option).run(on_ready)
