"""What an observability suite adds to a client or a server, as plain parts.

The suites of this package (:class:`~kitex_grpc.observability.otel.OpenTelemetrySuite`,
:class:`~kitex_grpc.observability.kitex_prom.KitexPrometheus`) sit below the options layer, so they
cannot build options themselves. Each says instead what it adds to each side, as an
:class:`Observers` record (:meth:`ObservabilitySuite.client_observers` /
:meth:`ObservabilitySuite.server_observers`); ``client.with_suite`` and ``server.with_suite`` turn
the record into the matching ``with_*`` options, in the record's field order. A suite of your own
can do the same, or implement Kitex's ``Suite`` shape (``client_options()`` / ``server_options()``)
above the options layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kitex_grpc.endpoint import Middleware
    from kitex_grpc.observability.lifecycle import ServerHook
    from kitex_grpc.observability.tracer import Tracer
    from kitex_grpc.streaming import RecvMiddleware, SendMiddleware

__all__ = ["ObservabilitySuite", "Observers"]


@dataclass(frozen=True, slots=True)
class Observers:
    """The parts a suite adds to one side; each becomes the ``with_*`` option of its name.

    ``instance_middlewares`` applies to clients only; ``lifecycle_hooks`` and ``metrics_endpoint``
    to servers only (``with_suite`` refuses them on the other side).
    """

    tracers: tuple[Tracer, ...] = ()
    instance_middlewares: tuple[Middleware, ...] = ()
    stream_send_middlewares: tuple[SendMiddleware, ...] = ()
    stream_recv_middlewares: tuple[RecvMiddleware, ...] = ()
    lifecycle_hooks: tuple[ServerHook, ...] = ()
    metrics_endpoint: ServerHook | None = None


@runtime_checkable
class ObservabilitySuite(Protocol):
    """A suite that describes its parts rather than building options (see the module docstring)."""

    def client_observers(self) -> Observers: ...

    def server_observers(self) -> Observers: ...
