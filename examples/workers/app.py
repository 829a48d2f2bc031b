"""A server factory for ``kitex-grpc serve``: the Echo service, each reply naming the worker's pid.

::

    kitex-grpc serve examples.workers.app:make_server --workers 2
    ECHO_TRANSPORT=grpc_h2 ECHO_ADDR=127.0.0.1:9000 ECHO_METRICS=127.0.0.1:9464 \\
        kitex-grpc serve examples.workers.app:make_server

The factory takes no argument, so it reads its settings from the environment (every worker sees the
same): ``ECHO_ADDR`` (default ``127.0.0.1:8888``), ``ECHO_TRANSPORT`` (``ttheader``: one port for
TTHeader, Framed, Kitex Protobuf and HTTP/2 gRPC; or ``grpc_h2``, ``grpc``), ``ECHO_METRICS`` (a
``host:port`` for the one merged ``/metrics`` page; needs the ``otel`` extra).
"""

from __future__ import annotations

import asyncio
import os

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import server


class PidEcho(echo_kitex.EchoHandler):
    """Unary answers ``<message> pid=<worker pid>``; a message ``sleep:<seconds>`` waits first."""

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        if request.message.startswith("sleep:"):
            await asyncio.sleep(float(request.message[6:]))
        return echo_pb2.EchoReply(message=f"{request.message} pid={os.getpid()}", seq=request.seq)


def make_server() -> server.Server:
    """The configured server, not started (``kitex-grpc serve`` starts it in each worker)."""
    options = [
        server.with_service_addr(os.environ.get("ECHO_ADDR", "127.0.0.1:8888")),
        server.with_transport_protocol(os.environ.get("ECHO_TRANSPORT", "ttheader")),
        server.with_exit_wait_time(float(os.environ.get("ECHO_EXIT_WAIT", "5"))),
    ]
    metrics = os.environ.get("ECHO_METRICS")
    if metrics:
        from kitex_grpc.observability.otel import OpenTelemetrySuite

        options.append(server.with_suite(OpenTelemetrySuite(metrics_endpoint=metrics)))
    return echo_kitex.new_server(PidEcho(), *options)
