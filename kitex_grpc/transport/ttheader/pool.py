"""Long-connection pool bookkeeping: pure, no I/O (Kitex ``pkg/remote/connpool/long_pool.go``).

Semantics of Kitex's long pool with an :class:`~kitex_grpc.transport.ttheader.config.IdleConfig`:

* a connection is in the pool only while idle; a call takes one out and puts it back when the reply
  has been read (so one request is in flight per connection);
* ``get`` takes the most recently returned connection (LIFO) and discards dead ones on the way;
* ``put`` keeps a connection only while the address has fewer than ``max_idle_per_address`` idle and
  the process fewer than ``max_idle_global``; otherwise the caller closes it;
* ``remove_address`` hands back every idle connection to an address that discovery removed;
* ``room`` says how many connections warm-up may add to an address without breaking a limit;
* ``evict`` (run periodically) drops, oldest first, connections idle longer than
  ``max_idle_timeout``, but keeps ``min_idle_per_address`` per address.

Methods return the connections the caller must close; the closing (I/O) happens after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from kitex_grpc.transport.ttheader.config import IdleConfig

__all__ = ["IdlePool"]

C = TypeVar("C")


class IdlePool(Generic[C]):
    """Idle connections per address, with Kitex's per-address and global limits."""

    __slots__ = ("_config", "_global_idle", "_idle")

    def __init__(self, config: IdleConfig) -> None:
        self._config = config
        # address -> [(conn, idle since)], oldest first
        self._idle: dict[str, list[tuple[C, float]]] = {}
        self._global_idle = 0

    @property
    def config(self) -> IdleConfig:
        return self._config

    @property
    def global_idle(self) -> int:
        return self._global_idle

    def idle_count(self, address: str) -> int:
        return len(self._idle.get(address, ()))

    def get(self, address: str, alive: Callable[[C], bool]) -> tuple[C | None, list[C]]:
        """The newest idle live connection to ``address`` (or ``None``), and dead ones to close."""
        idle = self._idle.get(address)
        dead: list[C] = []
        while idle:
            conn, _ = idle.pop()
            self._global_idle -= 1
            if alive(conn):
                return conn, dead
            dead.append(conn)
        return None, dead

    def put(self, address: str, conn: C, now: float) -> list[C]:
        """Return ``conn`` to the pool; returns ``[conn]`` if a limit says it must be closed instead."""
        cfg = self._config
        idle = self._idle.setdefault(address, [])
        if len(idle) >= cfg.max_idle_per_address or self._global_idle >= cfg.max_idle_global:
            return [conn]
        idle.append((conn, now))
        self._global_idle += 1
        return []

    def evict(self, now: float) -> list[C]:
        """Connections idle for longer than the idle timeout, beyond the per-address minimum."""
        cfg = self._config
        expired_before = now - cfg.max_idle_timeout
        out: list[C] = []
        for address in list(self._idle):
            idle = self._idle[address]
            i = 0
            while i < len(idle) - cfg.min_idle_per_address and idle[i][1] <= expired_before:
                out.append(idle[i][0])
                i += 1
            if i:
                del idle[:i]
                self._global_idle -= i
            if not idle:
                del self._idle[address]
        return out

    def discard(self, address: str, conn: C) -> bool:
        """Forget an idle connection that died while pooled; True if it was in the pool."""
        idle = self._idle.get(address)
        if not idle:
            return False
        for i, (c, _) in enumerate(idle):
            if c is conn:
                del idle[i]
                self._global_idle -= 1
                return True
        return False

    def room(self, address: str) -> int:
        """How many more idle connections ``address`` may hold now (per-address and global limits)."""
        cfg = self._config
        return max(
            0,
            min(cfg.max_idle_per_address - self.idle_count(address), cfg.max_idle_global - self._global_idle),
        )

    def remove_address(self, address: str) -> list[C]:
        """Forget every idle connection to ``address`` (an instance that went away); returns them."""
        idle = self._idle.pop(address, None)
        if not idle:
            return []
        self._global_idle -= len(idle)
        return [conn for conn, _ in idle]

    def clear(self) -> list[C]:
        """Empty the pool; returns every idle connection."""
        out = [conn for idle in self._idle.values() for conn, _ in idle]
        self._idle.clear()
        self._global_idle = 0
        return out
