"""Our Kitex series against kitex-contrib/monitor-prometheus itself: the same calls to a Go Kitex server
with its server tracer and to ours give the same page, line for line, up to the measured latencies."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
from pathlib import Path

import pytest

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import TransportProtocol, client, server
from kitex_grpc.errors import BizStatusError, KitexError
from kitex_grpc.observability.kitex_prom import KitexPrometheus
from tests.interop.kitex_peer import KitexConventionEcho, go_server, run_go_client_args
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


def _comparable(page: str, side: str = "server") -> list[str]:
    """The ``kitex_<side>_*`` series of a page with the measured values blanked (bucket counts and
    sums depend on the latencies). Our page also carries the process's client pool series, which
    Go's has not."""
    out = []
    for line in page.splitlines():
        if f"kitex_{side}_" not in line or "conn_pool" in line:
            continue
        if line.startswith((f"kitex_{side}_latency_us_bucket{{", f"kitex_{side}_latency_us_sum{{")):
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


# The Go client's case and the same call from Python (the Go cases' messages: interop/cmd/client).
CLIENT_CASES = {"unary": "hello", "biz_error": "biz:1001:bad thing", "plain_error": "error:boom"}


@pytest.mark.parametrize("case", sorted(CLIENT_CASES))
async def test_the_client_series_match_monitor_prometheus(kitex_bin: Path, tmp_path: Path, case: str) -> None:
    svr = echo_kitex.new_server(
        KitexConventionEcho(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(TransportProtocol.GRPC_H2),
    )
    await svr.start()
    try:
        page_file = tmp_path / "go-client.txt"
        code, results = await run_go_client_args(
            kitex_bin,
            *("-addr", svr.address, "-transport", "grpc", "-case", case),
            *("-from-service", "a-caller", "-prom-out", str(page_file)),
        )
        assert code == 0 and results[case]["ok"], results
        prom = KitexPrometheus()
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(svr.address),
            client.with_transport_protocol(TransportProtocol.GRPC_H2),
            client.with_client_basic_info("a-caller"),
            client.with_suite(prom),
            NOT_ABOUT_DIALING,
        )
        async with cli:
            with contextlib.suppress(KitexError):  # BizStatusError is one too
                await cli.Unary(Req(message=CLIENT_CASES[case]))
    finally:
        await svr.stop()
    go_page = page_file.read_text()
    assert "kitex_client_throughput{" in go_page
    assert _comparable(prom.render(), "client") == _comparable(go_page, "client")
