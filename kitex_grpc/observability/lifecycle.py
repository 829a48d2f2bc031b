"""Server lifecycle hooks: what health checking and the metrics endpoint attach to.

A :class:`ServerHook` is told about each phase of a server's life, in this order::

    await hook.prepare(server)   # in start(), before the transport exists: register services here
    await hook.serving(server)   # in start(), once the transport is bound and serving
    await hook.draining(server)  # in stop(), before the transport stops accepting and drains
    await hook.stopped(server)   # in stop(), after the transport has closed

Hooks run in option order for ``prepare``/``serving`` and in reverse for ``draining``/``stopped``.
The methods of this base class do nothing; subclasses override what they need.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerHook"]


class ServerHook:
    """Base class of server lifecycle hooks; every phase is a no-op unless overridden."""

    async def prepare(self, server: Any) -> None:
        """Before the transport is created; ``server.register_service`` still works here."""

    async def serving(self, server: Any) -> None:
        """After the transport is bound (``server.address`` is valid)."""

    async def draining(self, server: Any) -> None:
        """At the start of ``stop()``: the server is about to stop accepting and drain."""

    async def stopped(self, server: Any) -> None:
        """After the transport has stopped."""
