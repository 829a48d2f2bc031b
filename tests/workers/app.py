"""The server factory of the workers tests (``kitex-grpc serve tests.workers.app:make_server``).

Settings from the environment (the factory takes no argument): ``ECHO_ADDR``, ``ECHO_TRANSPORT``,
``ECHO_EXIT_WAIT``, ``ECHO_METRICS`` as examples/workers/app.py, and for the tests:
``WORKERS_TEST_NOTIFY`` a UDP port on 127.0.0.1 that each Unary call tells ``start <pid>`` when its
handler begins (so a test knows which calls are in flight); ``WORKERS_TEST_RAISE`` ``factory``
(the factory raises everywhere) or ``worker`` (only in a worker process);
``WORKERS_TEST_REGISTRY`` a file each register/deregister call appends a line to (with the pid);
``WORKERS_TEST_SHARED=1`` one listening socket shared by the workers (``reuse_port=False``);
``WORKERS_TEST_CONCURRENCY`` a concurrency limit; ``WORKERS_TEST_KITEX_PROM`` the address of a
Kitex-series (monitor-prometheus) page; ``WORKERS_TEST_PROBES`` the address of the HTTP probes.
"""

from __future__ import annotations

import os
import socket

from examples.workers import app
from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import server
from kitex_grpc.discovery.registry import Info
from kitex_grpc.observability.kitex_prom import KitexPrometheus


class FileRegistry:
    """A registry that writes ``register <addr> <pid>`` / ``deregister <addr> <pid>`` lines to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _line(self, what: str, info: Info) -> None:
        with open(self.path, "a") as f:
            f.write(f"{what} {info.addr} {os.getpid()}\n")

    async def register(self, info: Info) -> None:
        self._line("register", info)

    async def deregister(self, info: Info) -> None:
        self._line("deregister", info)


class NotifyingEcho(app.PidEcho):
    def __init__(self, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._port = port

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        self._sock.sendto(f"start {os.getpid()}".encode(), ("127.0.0.1", self._port))
        return await super().Unary(request)


def make_server() -> server.Server:
    fail = os.environ.get("WORKERS_TEST_RAISE", "")
    if fail == "factory" or (fail == "worker" and "KITEX_GRPC_WORKER" in os.environ):
        raise RuntimeError("the test factory fails on purpose")
    svr = app.make_server()
    notify = os.environ.get("WORKERS_TEST_NOTIFY")
    opts = svr.options
    extra = []
    if os.environ.get("WORKERS_TEST_REGISTRY"):
        extra.append(server.with_registry(FileRegistry(os.environ["WORKERS_TEST_REGISTRY"])))
    if os.environ.get("WORKERS_TEST_SHARED"):
        extra.append(server.with_workers(1, reuse_port=False))  # the count comes from --workers
    if os.environ.get("WORKERS_TEST_CONCURRENCY"):
        extra.append(server.with_concurrency_limit(int(os.environ["WORKERS_TEST_CONCURRENCY"])))
    if os.environ.get("WORKERS_TEST_KITEX_PROM"):
        extra.append(server.with_suite(KitexPrometheus(os.environ["WORKERS_TEST_KITEX_PROM"])))
    if os.environ.get("WORKERS_TEST_PROBES"):
        extra.append(server.with_http_probes(os.environ["WORKERS_TEST_PROBES"]))
    if not notify and not extra:
        return svr
    handler = NotifyingEcho(int(notify)) if notify else app.PidEcho()
    return echo_kitex.new_server(
        handler,
        server.with_service_addr(opts.service_addr),
        server.with_transport_protocol(opts.transport_protocol),
        server.with_exit_wait_time(opts.exit_wait_time),
        *extra,
    )
