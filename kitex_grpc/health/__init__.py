"""gRPC health checking (``grpc.health.v1.Health``: Check and Watch) for kitex-grpc servers.

::

    svr = echo_kitex.new_server(Echo(), server.with_health())     # SERVING after start()
    health = HealthServer()                                       # or keep a handle to set statuses
    svr = echo_kitex.new_server(Echo(), server.with_health(health))
    health.set_status("echo.v1.Echo", ServingStatus.NOT_SERVING)

The message classes (``HealthCheckRequest``, ``HealthCheckResponse``) are built at import time from
a descriptor written in code (see ``protos/grpc/health/v1/health.proto`` for the source form).
"""

from __future__ import annotations

from kitex_grpc.health._proto import HealthCheckRequest, HealthCheckResponse
from kitex_grpc.health.service import HEALTH_SERVICE_INFO, HealthHook, HealthServer, ServingStatus

__all__ = [
    "HEALTH_SERVICE_INFO",
    "HealthCheckRequest",
    "HealthCheckResponse",
    "HealthHook",
    "HealthServer",
    "ServingStatus",
]
