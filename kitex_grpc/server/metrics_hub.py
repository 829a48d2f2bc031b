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
from collections.abc import Callable

from kitex_grpc.address import parse_address
from kitex_grpc.observability.http_endpoint import HTTPEndpoint, Reply
from kitex_grpc.observability.prom_merge import Exposition, merge

__all__ = ["MetricsHub"]

SCRAPE_TIMEOUT = 5.0
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def scrape(address: str, path: str = "/metrics") -> str:
    """GET ``http://address<path>`` (HTTP/1.1, connection closed after), the body as text."""
    host, port = parse_address("metrics", address)
    async with asyncio.timeout(SCRAPE_TIMEOUT):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode())
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
    """Serves the merged page on ``address`` at ``path``; ``workers()`` gives the live workers' metrics
    addresses, each scraped at the same ``path``."""

    def __init__(
        self,
        address: str,
        workers: Callable[[], list[str]],
        restarts: Callable[[], int],
        path: str = "/metrics",
    ) -> None:
        self.path = path
        self._workers = workers
        self._restarts = restarts
        self.retired = Exposition()
        self.endpoint = HTTPEndpoint(
            address, {path: self._reply}, what="merged metrics endpoint", metrics_path=path
        )

    @property
    def requested(self) -> str:
        return self.endpoint.requested

    @property
    def address(self) -> str:
        """The bound ``host:port`` (once started)."""
        return self.endpoint.address

    def retire(self, final: str) -> None:
        """Keep an exited worker's last counters and histograms in every later page."""
        self.retired.add(final, monotonic_only=True)

    async def start(self) -> None:
        await self.endpoint.start()

    async def close(self) -> None:
        await self.endpoint.close()

    async def page(self) -> str:
        addresses = self._workers()
        results = await asyncio.gather(*(scrape(a, self.path) for a in addresses), return_exceptions=True)
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

    async def _reply(self) -> Reply:
        return 200, _CONTENT_TYPE, (await self.page()).encode()
