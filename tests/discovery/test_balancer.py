"""Load balancers: smooth WRR sequence, weighted random, consistent hash key movement and replicas."""

from __future__ import annotations

import collections
import random
from typing import Any

from kitex_grpc.discovery import (
    ConsistentHashBalancer,
    Instance,
    Result,
    WeightedRandomBalancer,
    WeightedRoundRobinBalancer,
)

RI: Any = None


def picks(balancer: Any, result: Result, n: int) -> list[str]:
    out = []
    for _ in range(n):
        ins = balancer.get_picker(result).next(RI, None)
        out.append(ins.address)
    return out


def test_smooth_wrr_is_nginx_sequence_and_plain_rr_for_equal_weights() -> None:
    result = Result.of("k", [Instance("a", 5), Instance("b", 1), Instance("c", 1)])
    # nginx's smooth WRR for 5:1:1 spreads the heavy instance: a a b a c a a
    assert picks(WeightedRoundRobinBalancer(), result, 7) == ["a", "a", "b", "a", "c", "a", "a"]
    equal = Result.of("e", [Instance("x"), Instance("y"), Instance("z")])
    assert picks(WeightedRoundRobinBalancer(), equal, 6) == ["x", "y", "z", "x", "y", "z"]


def test_zero_weight_dropped_and_empty_gives_no_instance() -> None:
    lb = WeightedRoundRobinBalancer()
    assert set(picks(lb, Result.of("k", [Instance("a", 0), Instance("b", 3)]), 4)) == {"b"}
    assert lb.get_picker(Result.of("none", [])).next(RI, None) is None


def test_weighted_random_follows_weights() -> None:
    lb = WeightedRandomBalancer(seed=7)
    counts = collections.Counter(picks(lb, Result.of("k", [Instance("a", 1), Instance("b", 3)]), 4000))
    assert 0.70 < counts["b"] / 4000 < 0.80


def _owners(lb: ConsistentHashBalancer, result: Result, keys: list[str]) -> dict[str, str]:
    owners = {}
    for key in keys:
        ins = lb.get_picker(result).next(RI, key)
        assert ins is not None
        owners[key] = ins.address
    return owners


def test_consistent_hash_moves_about_one_nth_of_keys_when_an_instance_is_added() -> None:
    keys = [f"user-{random.Random(1).random()}-{i}" for i in range(20000)]
    four = Result.of("four", [Instance(f"10.0.0.{i}:80") for i in range(4)])
    five = Result.of("five", [Instance(f"10.0.0.{i}:80") for i in range(5)])
    lb = ConsistentHashBalancer(lambda ri, req: req)
    before, after = _owners(lb, four, keys), _owners(lb, five, keys)
    moved = [k for k in keys if before[k] != after[k]]
    share = len(moved) / len(keys)
    print(f"consistent hash: {share:.3f} of keys moved going from 4 to 5 instances (ideal 0.200)")
    assert 0.15 < share < 0.25
    # every moved key moved to the new instance: nothing is reshuffled between the old ones
    assert {after[k] for k in moved} == {"10.0.0.4:80"}
    # and the spread is even: each instance owns roughly 1/5
    spread = collections.Counter(after.values())
    assert all(0.15 < c / len(keys) < 0.25 for c in spread.values())


def test_consistent_hash_replicas_are_distinct_fallbacks() -> None:
    result = Result.of("r", [Instance(f"h{i}:1") for i in range(4)])
    lb = ConsistentHashBalancer(lambda ri, req: req, replicas=2)
    picker = lb.get_picker(result)
    chosen = [picker.next(RI, "key"), picker.next(RI, "key"), picker.next(RI, "key"), picker.next(RI, "key")]
    assert chosen[3] is None
    assert len({c.address for c in chosen[:3] if c is not None}) == 3
    # the primary is stable for the key
    assert ConsistentHashBalancer(lambda ri, req: req).get_picker(result).next(RI, "key") == chosen[0]


def test_custom_balancer_is_a_plain_class() -> None:
    class First:
        name = "first"

        def get_picker(self, result: Result) -> Any:
            class P:
                def next(self, ri: Any, request: Any) -> Instance | None:
                    return result.instances[0]

            return P()

    from kitex_grpc.discovery.balancer import LoadBalancer

    assert isinstance(First(), LoadBalancer)
