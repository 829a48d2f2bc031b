"""Serving sockets the server was given (``server.with_listener``) instead of ones it binds."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from typing import Any

from kitex_grpc.address import format_address


def adopt(sockets: Sequence[socket.socket]) -> list[socket.socket]:
    """The given listening sockets, made non-blocking (the event loop accepts on them)."""
    for sock in sockets:
        sock.setblocking(False)
    return list(sockets)


def bound_address(sockets: Sequence[socket.socket]) -> str:
    """``host:port`` of the first socket, as the transports report their address."""
    host, port = sockets[0].getsockname()[:2]
    return format_address(host, int(port))


class ServerGroup:
    """One ``asyncio.Server`` per given socket, closed together (``asyncio.Server`` takes one ``sock``)."""

    def __init__(self, servers: list[asyncio.Server]) -> None:
        self.servers = servers

    @classmethod
    async def serve(
        cls, factory: Callable[[], asyncio.BaseProtocol], sockets: Sequence[socket.socket], **kwargs: Any
    ) -> ServerGroup:
        loop = asyncio.get_running_loop()
        servers: list[asyncio.Server] = []
        try:
            for sock in adopt(sockets):
                servers.append(await loop.create_server(factory, sock=sock, **kwargs))
        except BaseException:
            for server in servers:
                server.close()
            raise
        return cls(servers)

    def close(self) -> None:
        for server in self.servers:
            server.close()

    async def wait_closed(self) -> None:
        for server in self.servers:
            await server.wait_closed()
