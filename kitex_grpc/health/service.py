"""The grpc.health.v1.Health service, and the lifecycle hook that ties it to a server.

:class:`HealthServer` is an ordinary handler registered like any other service, so it works on
every transport that serves protobuf over gRPC (grpcio, h2). Statuses are kept per fully qualified
service name; ``""`` stands for the whole server.

:class:`HealthHook` (``server.with_health()``) registers it when the server starts, sets ``""`` and
every registered service to SERVING once the server is listening, and at the start of ``stop()``
turns them all NOT_SERVING: Watch streams see NOT_SERVING and then end, so draining does not wait
for them. After that, ``set_status`` is ignored, as grpc-go's ``Shutdown`` does.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from typing import Any

from kitex_grpc.errors import StatusError
from kitex_grpc.health._proto import PACKAGE, HealthCheckRequest, HealthCheckResponse
from kitex_grpc.observability.lifecycle import ServerHook
from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo, StreamingMode
from kitex_grpc.status import StatusCode

__all__ = ["HEALTH_SERVICE_INFO", "HealthHook", "HealthServer", "ServingStatus"]


class ServingStatus(enum.IntEnum):
    """``HealthCheckResponse.ServingStatus``."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


HEALTH_SERVICE_INFO = ServiceInfo(
    "Health",
    (
        MethodInfo("Check", StreamingMode.UNARY, HealthCheckRequest, HealthCheckResponse),
        MethodInfo("Watch", StreamingMode.SERVER, HealthCheckRequest, HealthCheckResponse),
    ),
    package_name=PACKAGE,
)

_END = -1  # queued to a watcher: the server is shutting down, end the stream


class HealthServer:
    """Serving statuses by service name, with Check and Watch handlers."""

    def __init__(self) -> None:
        self._statuses: dict[str, ServingStatus] = {}
        self._watchers: dict[str, set[asyncio.Queue[int]]] = {}
        self._shutdown = False

    def set_status(self, service: str, status: ServingStatus | int) -> None:
        """Set ``service``'s status (``""`` for the server); Watch streams see the change."""
        if self._shutdown:
            return
        self._set(service, ServingStatus(status))

    def status(self, service: str = "") -> ServingStatus | None:
        """The status of ``service``, or ``None`` if it was never set."""
        return self._statuses.get(service)

    def shutdown(self) -> None:
        """Every status becomes NOT_SERVING for good; Watch streams get it, then end."""
        if self._shutdown:
            return
        for service in list(self._statuses):
            self._set(service, ServingStatus.NOT_SERVING)
        self._shutdown = True
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(_END)

    def _set(self, service: str, status: ServingStatus) -> None:
        if self._statuses.get(service) is status:
            return
        self._statuses[service] = status
        for queue in self._watchers.get(service, ()):
            queue.put_nowait(status)

    # -- the RPC methods ----------------------------------------------------------------------------

    async def Check(self, request: Any) -> Any:
        status = self._statuses.get(request.service)
        if status is None:
            raise StatusError(StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return HealthCheckResponse(status=int(status))

    async def Watch(self, request: Any) -> AsyncIterator[Any]:
        service: str = request.service
        queue: asyncio.Queue[int] = asyncio.Queue()
        self._watchers.setdefault(service, set()).add(queue)
        try:
            last = self._statuses.get(service, ServingStatus.SERVICE_UNKNOWN)
            yield HealthCheckResponse(status=int(last))
            if self._shutdown:
                return
            while True:
                status = await queue.get()
                if status == _END:
                    return
                if status != last:
                    last = ServingStatus(status)
                    yield HealthCheckResponse(status=int(last))
        finally:
            queues = self._watchers.get(service)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._watchers[service]

    def __repr__(self) -> str:
        return f"HealthServer({ {k or '<server>': v.name for k, v in self._statuses.items()} })"


class HealthHook(ServerHook):
    """Registers Health on the server and follows its lifecycle (``server.with_health()``)."""

    def __init__(self, health: HealthServer | None = None) -> None:
        self.health = health if health is not None else HealthServer()

    async def prepare(self, server: Any) -> None:
        if not any(s.full_name == HEALTH_SERVICE_INFO.full_name for s in server.services):
            server.register_service(HEALTH_SERVICE_INFO, self.health)

    async def serving(self, server: Any) -> None:
        health = self.health
        health.set_status("", ServingStatus.SERVING)
        for service in server.services:
            if health.status(service.full_name) is None:
                health.set_status(service.full_name, ServingStatus.SERVING)

    async def draining(self, server: Any) -> None:
        self.health.shutdown()

    def __repr__(self) -> str:
        return f"HealthHook({self.health!r})"
