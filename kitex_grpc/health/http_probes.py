"""HTTP liveness and readiness probes (``server.with_http_probes(addr)``), for Kubernetes and load balancers.

=========== ================================================================================================
path        answer
=========== ================================================================================================
``/healthz`` ``200 ok`` whenever the probe endpoint answers: the process and its event loop are alive
             (from ``start()``, before the service port is bound, until the end of ``stop()``).
``/readyz``  ``200 ready`` only while the server is started, registered (``with_registry``, if any) and
             not draining, and, with ``with_health``, while the gRPC health's overall status is SERVING;
             else ``503`` with the reason: ``starting``, ``not registered``, ``draining`` or ``health
             NOT_SERVING``.
=========== ================================================================================================

It follows the same lifecycle as gRPC health (:class:`~kitex_grpc.health.HealthHook`): readiness turns
503 the moment ``stop()`` begins (before the registry deregistration and the drain), while liveness
stays 200 through the drain, so an orchestrator stops sending new calls but does not kill the process
while it finishes the calls in flight. The endpoint closes when the server has stopped.

The address defaults to loopback; a kubelet probes the pod IP, so in a pod give ``":8081"`` (every
interface) or the pod address. The page has no authentication: see
:mod:`kitex_grpc.observability.http_endpoint` for the risk of exposing it.
"""

from __future__ import annotations

from typing import Any

from kitex_grpc.health.service import HealthHook, HealthServer, ServingStatus
from kitex_grpc.observability.http_endpoint import HTTPEndpoint, Reply
from kitex_grpc.observability.lifecycle import ServerHook

__all__ = ["DEFAULT_PROBE_ADDRESS", "HTTPProbes"]

DEFAULT_PROBE_ADDRESS = "127.0.0.1:8081"
_TEXT = "text/plain; charset=utf-8"


class HTTPProbes(ServerHook):
    """Serves ``/healthz`` and ``/readyz`` on ``address`` for the life of a server (see module doc)."""

    def __init__(self, address: str = DEFAULT_PROBE_ADDRESS) -> None:
        self.endpoint = HTTPEndpoint(
            address, {"/healthz": self._healthz, "/readyz": self._readyz}, what="http probes"
        )
        self.phase = "starting"  # starting -> serving -> draining -> stopped
        self._server: Any = None
        self._health: HealthServer | None = None

    @property
    def address(self) -> str:
        """The bound ``host:port`` (valid once the server's ``start()`` began)."""
        return self.endpoint.address

    def readiness(self) -> tuple[bool, str]:
        """``(ready, reason)`` as ``/readyz`` reports it."""
        server = self._server
        if self.phase != "serving" or server is None:
            return False, self.phase
        if not server.serving:  # stop() has begun; the draining hooks come after deregistration
            return False, "draining"
        if not server.registered:
            return False, "not registered"
        if self._health is not None:
            status = self._health.status("")
            if status is not ServingStatus.SERVING:
                return False, f"health {status.name if status is not None else 'UNKNOWN'}"
        return True, "ready"

    def _healthz(self) -> Reply:
        return 200, _TEXT, b"ok\n"

    def _readyz(self) -> Reply:
        ready, reason = self.readiness()
        return (200 if ready else 503), _TEXT, (reason + "\n").encode()

    async def prepare(self, server: Any) -> None:
        self._server = server
        for hook in server.options.hooks:
            if isinstance(hook, HealthHook):
                self._health = hook.health
        self.phase = "starting"
        await self.endpoint.start()  # a taken or unusable address fails start() here

    async def serving(self, server: Any) -> None:
        self.phase = "serving"

    async def draining(self, server: Any) -> None:
        self.phase = "draining"

    async def stopped(self, server: Any) -> None:
        self.phase = "stopped"
        await self.endpoint.close()

    def __repr__(self) -> str:
        return f"HTTPProbes({self.endpoint.address or self.endpoint.requested!r})"
