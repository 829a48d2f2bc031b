"""A DNS resolver (kitex-contrib ``resolver-dns``): the target is the callee's ``host:port``.

Each resolution looks the host up again (``getaddrinfo``); the discovery cache re-resolves every
refresh interval (5 s by default), so DNS changes are picked up periodically.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from kitex_grpc.discovery.resolver import DEFAULT_WEIGHT, Change, Instance, Result, default_diff
from kitex_grpc.errors import ServiceDiscoveryError

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import EndpointInfo


class DNSResolver:
    """Resolve ``host:port`` targets through DNS (every address found gets weight 10).

    ``target`` is the destination service name, which must be ``host:port`` (as with resolver-dns);
    pass ``default_port`` to allow bare host names.
    """

    name = "dns"

    def __init__(self, default_port: int | None = None, family: int = socket.AF_UNSPEC) -> None:
        self._default_port = default_port
        self._family = family

    def target(self, endpoint: EndpointInfo) -> str:
        return endpoint.service_name

    async def resolve(self, target: str) -> Result:
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit():
            if self._default_port is None:
                raise ServiceDiscoveryError(f"dns: target {target!r} is not host:port")
            host, port = target, str(self._default_port)
        host = host.strip("[]")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, int(port), family=self._family, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ServiceDiscoveryError(f"dns: lookup of {host!r} failed: {exc}").with_cause(exc) from exc
        addresses: list[str] = []
        for family, _, _, _, sockaddr in infos:
            ip = str(sockaddr[0])
            address = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise ServiceDiscoveryError(f"dns: no address for {host!r}")
        return Result.of(target, [Instance(a, DEFAULT_WEIGHT) for a in addresses])

    def diff(self, cache_key: str, prev: Result, next: Result) -> tuple[Change, bool]:
        return default_diff(cache_key, prev, next)
