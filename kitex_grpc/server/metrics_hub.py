"""The supervisor's ``/metrics``: one page for the whole server, merged from every worker's.

Each worker serves its metrics on a private loopback port and tells the supervisor which; on each
``GET /metrics`` the hub scrapes every live worker at once (a worker that does not answer within
:data:`SCRAPE_TIMEOUT` is left out and counted) and sums the expositions
(:mod:`kitex_grpc.observability.prom_merge`), adding the last counts of workers that have exited.
It adds three series of its own: ``kitex_grpc_workers`` (workers serving),
``kitex_grpc_worker_restarts_total`` and ``kitex_grpc_worker_scrape_failures`` (workers left out of
this page). It binds the address the user gave the metrics endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from kitex_grpc.observability.prom_merge import Exposition, merge
from kitex_grpc.options.address import format_address, parse_address

__all__ = ["MetricsHub"]

SCRAPE_TIMEOUT = 5.0
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MAX_REQUEST = 8192


async def scrape(address: str) -> str:
    """GET ``http://address/metrics`` (HTTP/1.1, connection closed after), the body as text."""
    host, port = parse_address("metrics", address)
    async with asyncio.timeout(SCRAPE_TIMEOUT):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            data = await reader.read()  # to EOF: the worker closes after the page
        finally:
            writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split(b" ")
    if len(status) < 2 or status[1] != b"200":
        raise ConnectionError(f"metrics of {address}: {head[:80]!r}")
    return body.decode()


class MetricsHub:
    """Serves the merged ``/metrics`` on ``address``; ``workers()`` gives the live metrics addresses."""

    def __init__(self, address: str, workers: Callable[[], list[str]], restarts: Callable[[], int]) -> None:
        self.requested = address
        self._workers = workers
        self._restarts = restarts
        self.retired = Exposition()
        self._server: asyncio.Server | None = None
        self.address = ""

    def retire(self, final: str) -> None:
        """Keep an exited worker's last counters and histograms in every later page."""
        self.retired.add(final, monotonic_only=True)

    async def start(self) -> None:
        host, port = parse_address("metrics endpoint", self.requested, allow_port_zero=True)
        self._server = await asyncio.start_server(self._handle, host or None, port)
        sockname = self._server.sockets[0].getsockname()
        self.address = format_address(sockname[0], sockname[1])

    async def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def page(self) -> str:
        addresses = self._workers()
        results = await asyncio.gather(*(scrape(a) for a in addresses), return_exceptions=True)
        texts = [r for r in results if isinstance(r, str)]
        own = (
            "# HELP kitex_grpc_workers Worker processes serving\n# TYPE kitex_grpc_workers gauge\n"
            f"kitex_grpc_workers {len(addresses)}\n"
            "# HELP kitex_grpc_worker_restarts_total Workers restarted after exiting on their own\n"
            "# TYPE kitex_grpc_worker_restarts_total counter\n"
            f"kitex_grpc_worker_restarts_total {self._restarts()}\n"
            "# HELP kitex_grpc_worker_scrape_failures Workers left out of this page\n"
            "# TYPE kitex_grpc_worker_scrape_failures gauge\n"
            f"kitex_grpc_worker_scrape_failures {len(addresses) - len(texts)}\n"
        )
        return merge([*texts, own], self.retired)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10.0):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_REQUEST:
                return
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method != "GET":
                code, ctype, body = 405, "text/plain", b"method not allowed\n"
            elif path.split("?", 1)[0] != "/metrics":
                code, ctype, body = 404, "text/plain", b"not found\n"
            else:
                code, ctype, body = 200, _CONTENT_TYPE, (await self.page()).encode()
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[code]
            writer.write(
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass  # a malformed or slow request: just close
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
