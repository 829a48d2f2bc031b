"""A Prometheus ``/metrics`` endpoint, written from the OpenTelemetry SDK's own reader.

No Prometheus client library is needed: :class:`PrometheusEndpoint` collects an
``InMemoryMetricReader`` (cumulative temporality) on each scrape and renders the text exposition
format 0.0.4 itself. It is an :class:`~kitex_grpc.observability.http_endpoint.HTTPEndpoint` that
answers ``GET /metrics`` and nothing else. It listens where it is told: ``127.0.0.1:9464`` by
default, or any ``host:port`` (or ``:port`` for every interface) so that a Prometheus server
elsewhere can scrape it. The page has no authentication: read the risk in
:mod:`kitex_grpc.observability.http_endpoint` before binding beyond loopback. ``extra`` sources
(e.g. :meth:`KitexPrometheus.render <kitex_grpc.observability.kitex_prom.KitexPrometheus.render>`)
are appended to the page.

As a server lifecycle hook it binds in ``server.start()`` and closes in ``server.stop()``; use it
through :func:`kitex_grpc.server.with_metrics_endpoint` or ``OpenTelemetrySuite(metrics_endpoint=...)``.
"""

from __future__ import annotations

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

from kitex_grpc.observability.http_endpoint import HTTPEndpoint, Reply

__all__ = ["PrometheusEndpoint", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


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


class PrometheusEndpoint(HTTPEndpoint):
    """Serves ``GET /metrics`` on ``host:port`` (port 0 picks one; see :attr:`address`)."""

    def __init__(
        self,
        reader: InMemoryMetricReader,
        address: str = "127.0.0.1:9464",
        extra: Sequence[Callable[[], str]] = (),
    ) -> None:
        super().__init__(address, {"/metrics": self._page}, what="metrics endpoint", metrics_path="/metrics")
        self.reader = reader
        self.extra = tuple(extra)

    def _page(self) -> Reply:
        text = render(self.reader.get_metrics_data()) + "".join(source() for source in self.extra)
        return 200, CONTENT_TYPE, text.encode()

    def __repr__(self) -> str:
        return f"PrometheusEndpoint({self.address or self.requested!r})"
