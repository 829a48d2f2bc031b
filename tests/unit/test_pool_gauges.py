"""kitex_grpc.transport.pool_gauges: the pool-size rows and the weakly held size callback."""

from __future__ import annotations

import gc
from collections.abc import Mapping

from kitex_grpc.observability import metrics
from kitex_grpc.transport import pool_gauges


def test_size_rows_count_each_address_occurrence() -> None:
    rows = pool_gauges.size_rows("ttheader", ["a:1", "b:2", "a:1"])
    assert rows == [
        ({"address": "a:1", "transport": "ttheader"}, 2),
        ({"address": "b:2", "transport": "ttheader"}, 1),
    ]


def test_size_rows_of_a_mapping_count_its_keys_not_its_values() -> None:
    channels = {"a:1": object(), "b:2": object()}  # what the grpcio transport passes: address -> channel
    assert pool_gauges.size_rows("grpc", channels) == [
        ({"address": "a:1", "transport": "grpc"}, 1),
        ({"address": "b:2", "transport": "grpc"}, 1),
    ]


class _Pool:
    def pool_sizes(self) -> list[tuple[Mapping[str, str], int]]:
        return pool_gauges.size_rows("test-weak", ["w:1", "w:1"])


def _ours() -> list[tuple[dict[str, str], int]]:
    return [row for row in metrics.pool_sizes() if row[0]["transport"] == "test-weak"]


def test_sizes_registered_weakly_go_when_the_owner_is_collected_or_closed() -> None:
    assert metrics.register_pool_size is pool_gauges.register_pool_size  # one registry, two names
    pool = _Pool()
    pool_gauges.register_sizes_weakly(pool)
    assert _ours() == [({"address": "w:1", "transport": "test-weak"}, 2)]
    del pool
    gc.collect()
    assert _ours() == []

    kept = _Pool()
    unregister = pool_gauges.register_sizes_weakly(kept)
    assert len(_ours()) == 1
    unregister()  # closed before it is collected
    assert _ours() == []
    assert kept.pool_sizes()  # still alive: it was the close that unregistered it
