"""A Prometheus ``/metrics`` endpoint, written from the OpenTelemetry SDK's own reader.

No Prometheus client library is needed: :class:`PrometheusEndpoint` collects an
``InMemoryMetricReader`` (cumulative temporality) on each scrape and renders the text exposition
format 0.0.4 itself. The HTTP server is a few lines of asyncio that answers ``GET /metrics`` and
nothing else. It listens where it is told: ``127.0.0.1:9464`` by default, or any ``host:port`` (or
``:port`` for every interface) so that a Prometheus server elsewhere can scrape it. The page has no
authentication: read the risk in :mod:`kitex_grpc.observability.http_endpoint` before binding beyond
loopback. ``extra`` sources (e.g. :meth:`KitexPrometheus.render
<kitex_grpc.observability.kitex_prom.KitexPrometheus.render>`) are appended to the page.

As a server lifecycle hook it binds in ``server.start()`` and closes in ``server.stop()``; use it
through :func:`kitex_grpc.server.with_metrics_endpoint` or ``OpenTelemetrySuite(metrics_endpoint=...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    MetricsData,
    Sum,
)

from kitex_grpc.observability.http_endpoint import parse_listen_address
from kitex_grpc.observability.lifecycle import ServerHook

__all__ = ["PrometheusEndpoint", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_MAX_REQUEST = 8192


def _name(name: str) -> str:
    cleaned = _INVALID.sub("_", name)
    return "_" + cleaned if cleaned[:1].isdigit() else cleaned


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(attributes: Mapping[str, Any] | None, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = [(_name(str(k)), _escape(str(v))) for k, v in (attributes or {}).items()]
    pairs.extend(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if math.isnan(value):
            return "NaN"
    return repr(value) if isinstance(value, float) else str(value)


def render(data: MetricsData | None) -> str:
    """The Prometheus text exposition of a metrics collection (counters get ``_total``)."""
    families: dict[str, tuple[str, str, list[str]]] = {}
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _family(families, metric)
    out: list[str] = []
    for name, (kind, help_text, lines) in sorted(families.items()):
        out.append(f"# HELP {name} {_escape(help_text)}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n" if out else ""


def _family(families: dict[str, tuple[str, str, list[str]]], metric: Any) -> None:
    base = _name(metric.name)
    help_text = metric.description or metric.name
    if metric.unit:
        help_text += f" ({metric.unit})"
    data = metric.data
    if isinstance(data, Sum):
        kind = "counter" if data.is_monotonic else "gauge"
        name = base + "_total" if data.is_monotonic and not base.endswith("_total") else base
        lines = families.setdefault(name, (kind, help_text, []))[2]
        lines.extend(f"{name}{_labels(p.attributes)} {_number(p.value)}" for p in data.data_points)
    elif isinstance(data, Gauge):
        lines = families.setdefault(base, ("gauge", help_text, []))[2]
        lines.extend(f"{base}{_labels(p.attributes)} {_number(p.value)}" for p in data.data_points)
    elif isinstance(data, Histogram):
        lines = families.setdefault(base, ("histogram", help_text, []))[2]
        for point in data.data_points:
            cumulative = 0
            for bound, count in zip([*point.explicit_bounds, math.inf], point.bucket_counts, strict=False):
                cumulative += count
                le = ("le", _number(float(bound)))
                lines.append(f"{base}_bucket{_labels(point.attributes, [le])} {cumulative}")
            lines.append(f"{base}_sum{_labels(point.attributes)} {_number(point.sum)}")
            lines.append(f"{base}_count{_labels(point.attributes)} {point.count}")


class PrometheusEndpoint(ServerHook):
    """Serves ``GET /metrics`` on ``host:port`` (port 0 picks one; see :attr:`address`)."""

    def __init__(
        self,
        reader: InMemoryMetricReader,
        address: str = "127.0.0.1:9464",
        extra: Sequence[Callable[[], str]] = (),
    ) -> None:
        self._host, self._port = parse_listen_address(address, "metrics endpoint")
        self.requested = address
        self.reader = reader
        self.extra = tuple(extra)
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        """Bind and serve (also called by the server's ``start()``)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        sockname = self._server.sockets[0].getsockname()
        host = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
        self.address = f"{host}:{sockname[1]}"

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
            async with asyncio.timeout(10.0):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_REQUEST:
                raise ValueError("request too large")
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method != "GET":
                await self._reply(writer, 405, "text/plain", b"method not allowed\n")
            elif path.split("?", 1)[0] != "/metrics":
                await self._reply(writer, 404, "text/plain", b"not found\n")
            else:
                text = render(self.reader.get_metrics_data()) + "".join(source() for source in self.extra)
                body = text.encode()
                await self._reply(writer, 200, CONTENT_TYPE, body)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass  # a malformed or slow request: just close
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, code: int, content_type: str, body: bytes) -> None:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[code]
        writer.write(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
            + body
        )
        await writer.drain()

    def __repr__(self) -> str:
        return f"PrometheusEndpoint({self.address or self.requested!r})"
