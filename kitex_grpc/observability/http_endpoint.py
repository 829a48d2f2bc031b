"""A tiny HTTP/1.1 server for scrapes and probes: ``GET <path>`` answered by a callback, nothing else.

Used by :class:`~kitex_grpc.observability.kitex_prom.KitexPrometheus`'s metrics page and by the HTTP
probes (``server.with_http_probes``). It is a server lifecycle hook: it binds in ``server.start()``
and closes in ``server.stop()``. Each connection serves one request and closes; a request head over
8 KiB or slower than 10 s is dropped; any method but ``GET`` is answered 405, an unknown path 404.

**Address.** ``host:port``, ``[v6]:port``, or ``:port`` for every interface (as Go's
``http.ListenAndServe(":9092")``). Port 0 picks a free port (read :attr:`HTTPEndpoint.address`).
The default of every caller is loopback (``127.0.0.1``).

**Risk of a non-loopback address.** The page has no authentication and no TLS. A metrics page tells
whoever can reach it the service's and its callers' names, methods, call rates, error rates and,
through the connection-pool series, the addresses of the instances it calls; a probe endpoint tells
whether the server is draining. Bind to the pod or host address only where the network is trusted
(a Kubernetes pod network with a NetworkPolicy, a firewall that admits the Prometheus server only),
never to a public interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kitex_grpc.observability.lifecycle import ServerHook
from kitex_grpc.observability.stats import split_host_port

__all__ = ["HTTPEndpoint", "Reply", "Route", "parse_listen_address"]

logger = logging.getLogger("kitex_grpc.observability")

# (status code, content type, body)
Reply = tuple[int, str, bytes]
# What answers one path: a reply at once, or one that must wait (a merged scrape of workers)
Route = Callable[[], Reply | Awaitable[Reply]]

_MAX_REQUEST = 8192
_READ_TIMEOUT = 10.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def parse_listen_address(address: str, what: str) -> tuple[str | None, int]:
    """``(host, port)`` to bind; host ``None`` means every interface (``":port"``)."""
    host, port = split_host_port(address)
    if port is None or port > 65535:
        raise ValueError(f"{what}: expected 'host:port' (or ':port' for every interface), got {address!r}")
    return (host or None), port


class HTTPEndpoint(ServerHook):
    """Serves ``GET`` for each path of ``routes`` (a callback giving the reply) on ``address``."""

    def __init__(
        self, address: str, routes: Mapping[str, Route], *, what: str, metrics_path: str | None = None
    ) -> None:
        self._host, self._port = parse_listen_address(address, what)
        self.requested = address
        self.routes = dict(routes)
        self.what = what
        self.metrics_path = metrics_path  # the Prometheus page among the routes, if this serves one
        self._server: asyncio.Server | None = None
        self.address = ""

    def moved_to(self, address: str) -> HTTPEndpoint:
        """The same pages served on ``address`` instead (a worker serves its metrics privately)."""
        moved = copy.copy(self)
        moved._host, moved._port = parse_listen_address(address, self.what)
        moved.requested = address
        moved._server = None
        moved.address = ""
        return moved

    async def answer(self, path: str) -> Reply:
        """What ``GET path`` gets (404 for a path with no route)."""
        route = self.routes.get(path)
        if route is None:
            return 404, "text/plain", b"not found\n"
        answer = route()
        return answer if isinstance(answer, tuple) else await answer

    async def start(self) -> None:
        """Bind and serve (also called by the server's ``start()``); an unusable address raises OSError."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        sockname = self._server.sockets[0].getsockname()
        host = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
        self.address = f"{host}:{sockname[1]}"
        logger.info("%s serving on %s", self.what, self.address)

    async def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def serving(self, server: Any) -> None:
        await self.start()

    async def stopped(self, server: Any) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_REQUEST:
                raise ValueError("request too large")
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method != "GET":
                reply: Reply = (405, "text/plain", b"method not allowed\n")
            else:
                reply = await self.answer(path.split("?", 1)[0])
            await _reply(writer, *reply)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass  # a malformed or slow request: just close
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def __repr__(self) -> str:
        return f"HTTPEndpoint({self.what}, {self.address or self.requested!r})"


async def _reply(writer: asyncio.StreamWriter, code: int, content_type: str, body: bytes) -> None:
    writer.write(
        f"HTTP/1.1 {code} {_REASONS.get(code, 'Unknown')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
        + body
    )
    await writer.drain()
