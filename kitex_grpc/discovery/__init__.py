"""Service discovery, load balancing and registration (Kitex ``pkg/discovery``, ``pkg/loadbalance``,
``pkg/registry``).

::

    from kitex_grpc import client
    from kitex_grpc.discovery import ConsistentHashBalancer, DNSResolver

    cli = echo_kitex.new_client("echo", client.with_resolver(DNSResolver()),
                                client.with_load_balancer(ConsistentHashBalancer(lambda ri, req: req.key)))

etcd (kitex-contrib registry-etcd layout) lives in :mod:`kitex_grpc.discovery.etcd`.
"""

from __future__ import annotations

from kitex_grpc.discovery.balancer import (
    ConsistentHashBalancer,
    LoadBalancer,
    Picker,
    WeightedRandomBalancer,
    WeightedRoundRobinBalancer,
)
from kitex_grpc.discovery.cache import CacheOptions
from kitex_grpc.discovery.dns import DNSResolver
from kitex_grpc.discovery.registry import NOOP_REGISTRY, Info, Registry
from kitex_grpc.discovery.resolver import DEFAULT_WEIGHT, Change, Instance, Resolver, Result, default_diff
from kitex_grpc.discovery.static import StaticResolver

__all__ = [
    "DEFAULT_WEIGHT",
    "NOOP_REGISTRY",
    "CacheOptions",
    "Change",
    "ConsistentHashBalancer",
    "DNSResolver",
    "Info",
    "Instance",
    "LoadBalancer",
    "Picker",
    "Registry",
    "Resolver",
    "Result",
    "StaticResolver",
    "WeightedRandomBalancer",
    "WeightedRoundRobinBalancer",
    "default_diff",
]
