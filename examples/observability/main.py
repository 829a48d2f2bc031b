"""Tracing, metrics, health, reflection and the access log, exported to the console.

Run from the repository root (after ``make gen``; needs the ``otel`` extra)::

    python examples/observability/main.py [--transport grpc|grpc_h2] [--prometheus 127.0.0.1:0]

It starts two Echo servers, ``edge`` and ``backend``: ``edge`` answers each call by calling
``backend``, so one trace spans client -> edge -> backend. Spans are printed as JSON by the SDK's
``ConsoleSpanExporter``, metrics by ``ConsoleMetricExporter``; the edge server also serves Prometheus
text on a loopback port, scraped once at the end, and grpc.health.v1 plus reflection.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client, server
from kitex_grpc.observability.otel import OpenTelemetrySuite
from kitex_grpc.observability.otel_prometheus import PrometheusEndpoint


class Edge(echo_kitex.EchoHandler):
    def __init__(self, backend: echo_kitex.EchoClient) -> None:
        self.backend = backend

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        reply = await self.backend.Unary(echo_pb2.EchoRequest(message=f"via edge: {request.message}"))
        return echo_pb2.EchoReply(message=reply.message, seq=request.seq)


class Backend(echo_kitex.EchoHandler):
    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        return echo_pb2.EchoReply(message=request.message.upper(), seq=request.seq)

    async def ServerStream(self, request: echo_pb2.EchoRequest) -> AsyncIterator[echo_pb2.EchoReply]:
        for i in range(3):
            yield echo_pb2.EchoReply(message=request.message, seq=i)


async def scrape(address: str) -> str:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return raw.decode().partition("\r\n\r\n")[2]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="grpc")
    parser.add_argument("--prometheus", default="127.0.0.1:0", help="loopback host:port for /metrics")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "kitex-grpc-demo"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    prometheus_reader = InMemoryMetricReader()
    console_reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
    meter_provider = MeterProvider(metric_readers=[prometheus_reader, console_reader])
    suite = OpenTelemetrySuite(tracer_provider=tracer_provider, meter_provider=meter_provider)
    endpoint = PrometheusEndpoint(prometheus_reader, args.prometheus)

    transport = args.transport
    backend = echo_kitex.new_server(
        Backend(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(transport),
        server.with_suite(suite),
        server.with_exit_wait_time(1),
    )
    await backend.start()
    to_backend = echo_kitex.new_client(
        "backend",
        client.with_host_ports(backend.address),
        client.with_transport_protocol(transport),
        client.with_suite(suite),
    )
    edge = echo_kitex.new_server(
        Edge(to_backend),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(transport),
        server.with_suite(suite),
        server.with_access_log(),
        server.with_health(),
        server.with_reflection(),
        server.with_metrics_endpoint(endpoint),
        server.with_exit_wait_time(1),
    )
    await edge.start()
    print(edge.describe(), flush=True)
    cli = echo_kitex.new_client(
        "edge",
        client.with_host_ports(edge.address),
        client.with_transport_protocol(transport),
        client.with_suite(suite),
    )
    try:
        for i in range(3):
            reply = await cli.Unary(echo_pb2.EchoRequest(message=f"hello {i}", seq=i))
            print(f"reply: {reply.message!r}", flush=True)
        async with echo_kitex.new_client(
            "backend",
            client.with_host_ports(backend.address),
            client.with_transport_protocol(transport),
            client.with_suite(suite),
        ) as direct:
            print("stream:", [r.seq async for r in direct.ServerStream(echo_pb2.EchoRequest(message="s"))])
        print(f"--- Prometheus scrape of http://{endpoint.address}/metrics ---", flush=True)
        text = await scrape(endpoint.address)
        print(
            "\n".join(
                line for line in text.splitlines() if line.startswith(("kitex_", "rpc_server_duration_count"))
            )
        )
    finally:
        await cli.close()
        await edge.stop()
        await to_backend.close()
        await backend.stop()
        meter_provider.shutdown()  # flushes the console metric exporter once more
        tracer_provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
