"""The sockets a workers' supervisor binds before it starts any worker.

Binding in the parent reports an unusable address or a port already taken once, clearly, before a
worker exists, and resolves port 0 to one port for every worker. Three plans:

- ``reuseport`` (Linux, the default there): each worker slot gets its own listening sockets with
  ``SO_REUSEPORT``; the kernel spreads new connections over the slots by a hash of the 4-tuple. The
  parent keeps every slot's sockets open, so a worker being replaced (SIGHUP) hands its slot's accept
  queue to its successor with nothing lost; a slot whose worker crashed gets fresh sockets (the
  connections queued on the dead worker's are reset, and new ones go to the live slots meanwhile).
- ``shared`` (elsewhere, or ``with_workers(reuse_port=False)``): one set of listening sockets,
  inherited by every worker, which all accept on it.
- ``grpcio``: grpcio cannot adopt a listening socket, so each GRPC worker binds the resolved address
  itself with ``grpc.so_reuseport``; the roll's handover is then the kernel's (a connection queued on
  a closing listener is reset; clients connect again).

In the reuseport plans the parent also holds a bound, not listening, ``SO_REUSEPORT`` socket per
address (``reservation``), so the port stays ours while no worker listens; Linux hands connections
only to listening sockets. Before that, a plain bind checks that no other process (even one using
``SO_REUSEPORT`` itself) has the port.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from typing import Any

from kitex_grpc.address import format_address, parse_address

__all__ = ["BACKLOG", "ListenPlan", "bind_plan"]

BACKLOG = 1024  # as the TTHeader server's own listener


class ListenError(OSError):
    """The server's address cannot be used; the message says why."""


@dataclasses.dataclass(slots=True)
class ListenPlan:
    """What the parent bound: ``kind`` is ``"reuseport"``, ``"shared"`` or ``"grpcio"``."""

    kind: str
    address: str  # host:port, the port resolved
    addrinfos: list[tuple[int, Any]]
    reservation: list[socket.socket]
    shared: list[socket.socket]

    def slot_sockets(self) -> list[socket.socket]:
        """Listening sockets for one worker slot (a fresh SO_REUSEPORT set, or the shared one)."""
        if self.kind == "shared":
            return self.shared
        if self.kind == "grpcio":
            return []
        return _bind_all(self.addrinfos, reuse_port=True, listen=True)

    def close(self) -> None:
        for sock in (*self.reservation, *self.shared):
            sock.close()


def bind_plan(service_addr: str, *, grpcio: bool, reuse_port: bool | None) -> ListenPlan:
    """Check and reserve ``service_addr`` for workers (see the module docstring); raises ListenError."""
    host, port = parse_address("with_service_addr", service_addr, allow_port_zero=True)
    has_reuseport = hasattr(socket, "SO_REUSEPORT")
    if reuse_port is None:
        import sys

        reuse_port = has_reuseport and sys.platform.startswith("linux")
    if grpcio and not (reuse_port and has_reuseport):
        raise ListenError(
            errno.EINVAL,
            "workers: the GRPC (grpcio) transport shares a port only through SO_REUSEPORT, which "
            "this platform (or reuse_port=False) does not give; use GRPC_H2",
        )
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(errno.EINVAL, f"cannot listen on {service_addr!r}: {exc.strerror}") from None
    addrinfos: list[tuple[int, Any]] = []
    for family, _, _, _, sockaddr in infos:
        if (family, sockaddr) not in addrinfos:
            addrinfos.append((family, sockaddr))
    if not reuse_port:
        shared = _bind_all(addrinfos, reuse_port=False, listen=True, what=service_addr)
        bound = shared[0].getsockname()
        return ListenPlan("shared", format_address(host or bound[0], bound[1]), addrinfos, [], shared)
    # A plain bind first: it fails when anyone listens on the port, SO_REUSEPORT or not.
    probes = _bind_all(addrinfos, reuse_port=False, listen=False, what=service_addr)
    port = probes[0].getsockname()[1]
    for sock in probes:
        sock.close()
    addrinfos = [(family, (sockaddr[0], port, *sockaddr[2:])) for family, sockaddr in addrinfos]
    reservation = _bind_all(addrinfos, reuse_port=True, listen=False, what=service_addr)
    kind = "grpcio" if grpcio else "reuseport"
    return ListenPlan(kind, format_address(host or "0.0.0.0", port), addrinfos, reservation, [])


def _bind_all(
    addrinfos: list[tuple[int, Any]], *, reuse_port: bool, listen: bool, what: str = ""
) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for family, sockaddr in addrinfos:
            if sockets and sockaddr[1] == 0:  # port 0 on every interface: one port for all families
                sockaddr = (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:])
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # as asyncio: the IPv4 socket takes IPv4
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                where = what or repr(sockaddr)
                if exc.errno == errno.EADDRINUSE:
                    raise ListenError(
                        exc.errno, f"cannot listen on {where}: the port is already in use"
                    ) from None
                raise ListenError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
            if listen:
                sock.listen(BACKLOG)
                sock.set_inheritable(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
