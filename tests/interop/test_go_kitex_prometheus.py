"""Our Kitex series against kitex-contrib/monitor-prometheus itself: the same calls to a Go Kitex server
with its server tracer and to ours give the same page, line for line, up to the measured latencies."""

from __future__ import annotations

import asyncio
import http.client
from pathlib import Path

import pytest

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import TransportProtocol, client, server
from kitex_grpc.errors import BizStatusError, KitexError
from kitex_grpc.observability.kitex_prom import KitexPrometheus
from tests.interop.kitex_peer import KitexConventionEcho, go_server
from tests.support import NOT_ABOUT_DIALING

pytestmark = pytest.mark.interop

Req = echo_pb2.EchoRequest


def _get(address: str) -> str:
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()  # http.client undoes Go's chunked encoding
    finally:
        conn.close()


async def _calls(address: str) -> None:
    """Two calls that succeed, one BizStatusError, one handler error, as ``py-caller`` over GRPC_H2."""
    cli = echo_kitex.new_client(
        "echo",
        client.with_host_ports(address),
        client.with_transport_protocol(TransportProtocol.GRPC_H2),
        client.with_client_basic_info("py-caller"),
        NOT_ABOUT_DIALING,
    )
    async with cli:
        await cli.Unary(Req(message="a"))
        await cli.Unary(Req(message="b"))
        with pytest.raises(BizStatusError):
            await cli.Unary(Req(message="biz:1001:no"))
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="error:boom"))


def _comparable(page: str) -> list[str]:
    """The server series of a page with the measured values blanked (bucket counts and sums depend on
    the latencies). Our page also carries the process's client pool series, which Go's has not."""
    out = []
    for line in page.splitlines():
        if "kitex_server_" not in line:
            continue
        if line.startswith("kitex_server_latency_us_bucket{") or line.startswith(
            "kitex_server_latency_us_sum{"
        ):
            line = line.rpartition(" ")[0] + " <measured>"
        out.append(line)
    return out


async def test_the_page_matches_monitor_prometheus(kitex_bin: Path) -> None:
    with go_server(kitex_bin, "-prom-addr", "127.0.0.1:0", "-http2-meta") as go:
        await _calls(go.pb)
        go_page = await asyncio.to_thread(_get, go.fields["prom"])
    prom = KitexPrometheus("127.0.0.1:0")
    svr = echo_kitex.new_server(
        KitexConventionEcho(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(TransportProtocol.GRPC_H2),
        server.with_suite(prom),
    )
    await svr.start()
    try:
        await _calls(svr.address)
        assert prom.endpoint is not None
        our_page = await asyncio.to_thread(_get, prom.endpoint.address)
    finally:
        await svr.stop()
    # Both servers run without a configured name (callee "unknown"); the caller came in source-service.
    labels = 'callee="unknown",caller="py-caller",method="Unary",retry="0"'
    assert f'kitex_server_throughput{{{labels},status="succeed"}} 3' in go_page.splitlines()
    assert _comparable(our_page) == _comparable(go_page)
