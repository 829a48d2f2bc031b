"""The pool's bookkeeping alone: Kitex long-pool semantics without sockets."""

from __future__ import annotations

from kitex_grpc.options.client import IdleConfig
from kitex_grpc.transport.ttheader.pool import IdlePool


def alive(_: str) -> bool:
    return True


def test_get_is_lifo_and_skips_dead_connections() -> None:
    pool: IdlePool[str] = IdlePool(IdleConfig())
    for conn in ("a", "b", "c"):
        assert pool.put("h:1", conn, 0.0) == []
    conn, dead = pool.get("h:1", lambda c: c != "c")
    assert (conn, dead) == ("b", ["c"])
    assert pool.idle_count("h:1") == 1 and pool.global_idle == 1
    assert pool.get("other:1", alive) == (None, [])


def test_per_address_and_global_limits() -> None:
    pool: IdlePool[str] = IdlePool(IdleConfig(max_idle_per_address=2, max_idle_global=3))
    assert pool.put("a:1", "a1", 0) == [] and pool.put("a:1", "a2", 0) == []
    assert pool.put("a:1", "a3", 0) == ["a3"]  # over the per-address limit: close it
    assert pool.put("b:1", "b1", 0) == []
    assert pool.put("b:1", "b2", 0) == ["b2"]  # over the global limit
    assert pool.global_idle == 3


def test_evict_expired_keeps_min_idle_newest() -> None:
    pool: IdlePool[str] = IdlePool(IdleConfig(min_idle_per_address=1, max_idle_timeout=60))
    pool.put("a:1", "old1", 0)
    pool.put("a:1", "old2", 10)
    pool.put("a:1", "new", 100)
    assert pool.evict(65) == ["old1"]
    assert pool.evict(200) == ["old2"]  # "new" is expired too but is the one kept as minimum
    assert pool.idle_count("a:1") == 1 and pool.global_idle == 1


def test_discard_and_clear() -> None:
    pool: IdlePool[str] = IdlePool(IdleConfig())
    pool.put("a:1", "x", 0)
    pool.put("a:1", "y", 0)
    assert pool.discard("a:1", "x") and not pool.discard("a:1", "x")
    assert pool.clear() == ["y"] and pool.global_idle == 0


def test_room_respects_per_address_and_global_limits() -> None:
    pool: IdlePool[str] = IdlePool(IdleConfig(max_idle_per_address=3, max_idle_global=4))
    assert pool.room("a:1") == 3
    pool.put("a:1", "a1", 0)
    pool.put("a:1", "a2", 0)
    assert pool.room("a:1") == 1
    pool.put("b:1", "b1", 0)
    assert pool.room("b:1") == 1  # the global limit binds first: 3 of 4 are idle
    pool.put("b:1", "b2", 0)
    assert pool.room("a:1") == 0 and pool.room("c:1") == 0


def test_remove_address_returns_only_that_address() -> None:
    pool: IdlePool[str] = IdlePool(IdleConfig())
    pool.put("a:1", "a1", 0)
    pool.put("a:1", "a2", 0)
    pool.put("b:1", "b1", 0)
    assert pool.remove_address("a:1") == ["a1", "a2"]
    assert pool.remove_address("a:1") == []
    assert pool.idle_count("a:1") == 0 and pool.idle_count("b:1") == 1 and pool.global_idle == 1
