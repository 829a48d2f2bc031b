"""Decisions of the workers' supervisor, without I/O: when to restart a worker, and how soon.

The asyncio shell (:mod:`kitex_grpc.server.workers`) reports each worker's exit here and does what
comes back. A worker that exits on its own while the server is serving is restarted after a delay
that doubles with each quick failure of its slot, from :attr:`Backoff.initial` up to
:attr:`Backoff.maximum` (so a worker that crashes at once costs at most one start and one log line
per ``maximum`` seconds); a worker that ran for :attr:`Backoff.stable_after` seconds before exiting
starts its slot's count again. A worker that exits before the server was ever ready fails the
server (a broken program would otherwise crash-loop silently); one that exits while draining or
being replaced is not restarted.
"""

from __future__ import annotations

import dataclasses
import signal

__all__ = ["Backoff", "ExitDecision", "Supervisor", "describe_exit"]


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Restart delays: ``initial * factor**n`` for the n-th quick failure in a row, at most ``maximum``."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 10.0
    stable_after: float = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class ExitDecision:
    """What to do about a worker that exited: restart after ``delay`` seconds, or fail the server."""

    restart: bool
    delay: float = 0.0
    fail: bool = False
    failures: int = 0  # quick failures of this slot in a row, this one included


class Supervisor:
    """Per-slot restart bookkeeping for ``count`` workers."""

    def __init__(self, count: int, backoff: Backoff | None = None) -> None:
        if count < 1:
            raise ValueError(f"workers: expected a worker count >= 1, got {count}")
        self.count = count
        self.backoff = backoff or Backoff()
        self._failures = [0] * count
        self.serving = False  # every worker was ready once
        self.draining = False
        self.restarts = 0

    def worker_exited(self, slot: int, lived: float, *, expected: bool) -> ExitDecision:
        """A worker of ``slot`` exited after ``lived`` seconds; ``expected`` when it was told to stop."""
        if expected or self.draining:
            return ExitDecision(restart=False)
        if not self.serving:
            return ExitDecision(restart=False, fail=True)
        b = self.backoff
        if lived >= b.stable_after:
            self._failures[slot] = 0
        n = self._failures[slot]
        self._failures[slot] = n + 1
        self.restarts += 1
        return ExitDecision(restart=True, delay=min(b.maximum, b.initial * b.factor**n), failures=n + 1)


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``killed by SIGKILL`` (asyncio reports a signal as a negative code)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
