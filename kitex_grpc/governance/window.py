"""A sliding window of outcome counts in fixed buckets, with an injected clock (sans-IO).

Kitex's circuit breaker (``bgopkg:cloud/circuitbreaker``) counts over 10 s in 100 buckets of 100 ms.
"""

from __future__ import annotations

WINDOW = 10.0
BUCKETS = 100


class Window:
    """Success/failure/timeout counts over the last ``window`` seconds, ``buckets`` buckets wide."""

    __slots__ = ("_counts", "_epochs", "_span", "buckets")

    def __init__(self, window: float = WINDOW, buckets: int = BUCKETS) -> None:
        if window <= 0 or buckets <= 0:
            raise ValueError("Window: window and buckets must be positive")
        self.buckets = buckets
        self._span = window / buckets
        # per bucket: [successes, failures, timeouts], and the epoch (bucket number) it holds
        self._counts = [[0, 0, 0] for _ in range(buckets)]
        self._epochs = [-1] * buckets

    def _bucket(self, now: float) -> list[int]:
        epoch = int(now / self._span)
        idx = epoch % self.buckets
        if self._epochs[idx] != epoch:
            self._epochs[idx] = epoch
            self._counts[idx] = [0, 0, 0]
        return self._counts[idx]

    def add(self, kind: int, now: float) -> None:
        """Count one outcome: 0 success, 1 failure, 2 timeout."""
        self._bucket(now)[kind] += 1

    def totals(self, now: float) -> tuple[int, int, int]:
        """(successes, failures, timeouts) within the window ending at ``now``."""
        newest = int(now / self._span)
        s = f = t = 0
        for epoch, counts in zip(self._epochs, self._counts, strict=True):
            if newest - self.buckets < epoch <= newest:
                s += counts[0]
                f += counts[1]
                t += counts[2]
        return s, f, t

    def reset(self) -> None:
        self._epochs = [-1] * self.buckets
