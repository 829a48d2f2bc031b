"""Service registration (Kitex ``pkg/registry``): the Registry protocol, Info and NOOP_REGISTRY.

A server registers its :class:`Info` once it is listening and deregisters it first when it stops
(Kitex ``server/server.go``: deregister runs before the listener closes).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from kitex_grpc.discovery.resolver import DEFAULT_WEIGHT


@dataclasses.dataclass(frozen=True, slots=True)
class Info:
    """Kitex ``registry.Info``: what a registry publishes for one server.

    ``addr`` is ``host:port``; ``tags`` ``None`` means "no tags" (registry-etcd writes ``null``).
    """

    service_name: str
    addr: str
    payload_codec: str = "protobuf"
    weight: int = DEFAULT_WEIGHT
    start_time: float = dataclasses.field(default_factory=time.time)
    warm_up: float = 0.0
    tags: Mapping[str, str] | None = None
    skip_listen_addr: bool = False


@runtime_checkable
class Registry(Protocol):
    """Kitex ``registry.Registry``: publish and withdraw a server's :class:`Info`."""

    async def register(self, info: Info) -> None: ...

    async def deregister(self, info: Info) -> None: ...


class _NoopRegistry:
    """The registry that does nothing (Kitex ``registry.NoopRegistry``); the server's default."""

    async def register(self, info: Info) -> None:
        return None

    async def deregister(self, info: Info) -> None:
        return None

    def __repr__(self) -> str:
        return "NOOP_REGISTRY"


NOOP_REGISTRY: Registry = _NoopRegistry()


def registry_address(listen: str) -> str:
    """The address to publish for a listen address (registry-etcd ``getLocalIPv4Host`` rules).

    ``KITEX_IP_TO_REGISTRY`` / ``KITEX_PORT_TO_REGISTRY`` override host and port; an empty host,
    ``0.0.0.0`` or ``::`` becomes the first non-loopback IPv4 address of this machine.
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    host = os.environ.get("KITEX_IP_TO_REGISTRY") or host
    port = os.environ.get("KITEX_PORT_TO_REGISTRY") or port
    if host in ("", "0.0.0.0", "::"):
        host = _local_ipv4()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def _local_ipv4() -> str:
    try:
        for family, _, _, _, sockaddr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            ip = str(sockaddr[0])
            if family == socket.AF_INET and not ip.startswith("127."):
                return ip
    except OSError:
        pass
    return "127.0.0.1"
