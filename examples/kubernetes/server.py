"""The Echo server as it runs in a Kubernetes pod: ``python -m examples.kubernetes.server``.

Ports (the same numbers as ``deployment.yaml``):

- ``:8888`` the service (gRPC over h2, ``GRPC_H2``), with gRPC health (``grpc.health.v1``);
- ``:8081`` the HTTP probes: ``/healthz`` for the liveness probe, ``/readyz`` for the readiness probe;
- ``:9092`` the Prometheus page (``/metrics``): the Kitex series (``kitex_server_throughput``, ...).

SIGTERM (what the kubelet sends after the preStop hook) makes ``/readyz`` answer 503 at once, lets
the calls in flight finish within :data:`EXIT_WAIT_TIME` seconds, then exits. ``deployment.yaml``'s
``terminationGracePeriodSeconds`` is :data:`PRE_STOP_SLEEP` + :data:`EXIT_WAIT_TIME` + a margin, so
the kubelet never kills a pod that is still draining.

Every interface is bound because the kubelet and Prometheus reach the pod on its IP: the metrics and
probe pages have no authentication (see ``kitex_grpc/observability/http_endpoint.py``), so keep the
pod network closed with a NetworkPolicy.
"""

from __future__ import annotations

import os
from typing import Any

import kitex_grpc
from examples.echo.server import Echo
from gen.echo.v1 import echo_kitex
from kitex_grpc import eventloop, server
from kitex_grpc.observability.kitex_prom import KitexPrometheus

SERVICE_ADDR = "0.0.0.0:8888"
PROBE_ADDR = ":8081"
METRICS_ADDR = ":9092"
# Seconds. The readiness probe fails within one period (2 s) of SIGTERM; the preStop sleep covers
# the time endpoints controllers and kube-proxy take to stop routing new connections to the pod.
PRE_STOP_SLEEP = 5
EXIT_WAIT_TIME = 10
GRACE_MARGIN = 5


def build_server(
    service_addr: str = SERVICE_ADDR,
    probe_addr: str = PROBE_ADDR,
    metrics_addr: str = METRICS_ADDR,
    handler: Any = None,
) -> kitex_grpc.Server:
    """The server with probes, gRPC health, the Kitex Prometheus series and the exit wait time."""
    return echo_kitex.new_server(
        handler if handler is not None else Echo(),
        server.with_service_addr(service_addr),
        server.with_transport_protocol("GRPC_H2"),
        server.with_server_basic_info(os.environ.get("SERVICE_NAME", "echo")),
        server.with_health(),
        server.with_http_probes(probe_addr),
        server.with_suite(KitexPrometheus(metrics_addr)),
        server.with_exit_wait_time(EXIT_WAIT_TIME),
    )


async def main() -> None:
    svr = build_server(
        os.environ.get("SERVICE_ADDR", SERVICE_ADDR),
        os.environ.get("PROBE_ADDR", PROBE_ADDR),
        os.environ.get("METRICS_ADDR", METRICS_ADDR),
    )
    await svr.start()
    print(f"LISTENING {svr.address}", flush=True)
    await svr.run()


if __name__ == "__main__":
    eventloop.run(main())
