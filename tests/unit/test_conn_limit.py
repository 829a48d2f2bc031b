"""kitex_grpc.transport.conn_limit: counting connections at accept, with the real governance limiter."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kitex_grpc.governance.limiter import ConnectionLimiter
from kitex_grpc.transport.conn_limit import CountedProtocol, admit
from kitex_grpc.transport.eventlog import EventLog


def test_admit_counts_and_logs_the_connection_over_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    limiter = ConnectionLimiter(1)
    events = EventLog(logging.getLogger("test.conn_limit"))
    first, second = object(), object()
    with caplog.at_level(logging.WARNING, logger="test.conn_limit"):
        assert admit(limiter, first, events, "h2", ("127.0.0.1", 1))
        assert not admit(limiter, second, events, "h2", ("127.0.0.1", 2))
    assert (limiter.connections, limiter.rejected) == (1, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "h2 server: connection from ('127.0.0.1', 2) closed: max connections 1 reached (ConnOverLimit)"
    ]
    limiter.release(first)
    assert admit(limiter, second, events, "h2", ("127.0.0.1", 2))


class _Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.seen: list[object] = []

    def data_received(self, data: bytes) -> None:
        self.seen.append(data)

    def eof_received(self) -> bool | None:
        self.seen.append("eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.seen.append(("lost", exc))


def test_counted_protocol_passes_through_and_releases_once() -> None:
    limiter = ConnectionLimiter(1)
    key = object()
    assert limiter.acquire(key)
    inner = _Recorder()
    proto = CountedProtocol(inner, limiter, key)
    proto.data_received(b"ab")
    proto.eof_received()
    assert limiter.connections == 1  # still counted until the connection is lost
    proto.connection_lost(None)
    proto.connection_lost(None)  # a second loss must not release a second time
    assert limiter.connections == 0
    assert inner.seen == [b"ab", "eof", ("lost", None), ("lost", None)]
    assert limiter.acquire(object())  # the slot is free again
