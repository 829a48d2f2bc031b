"""OpenTelemetry metrics through the in-memory reader, the rejection and pool APIs, and a real scrape."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gen.echo.v1 import echo_pb2
from kitex_grpc import client, server
from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import KitexError, ServiceCircuitBreakError
from kitex_grpc.observability import metrics as api
from kitex_grpc.observability.otel_prometheus import PrometheusEndpoint, render
from kitex_grpc.rpcinfo import RPCInfo
from tests.observability.otel_support import OTel
from tests.support import connect, serve

Req = echo_pb2.EchoRequest


def points(m: dict[str, list[Any]], name: str, **attrs: Any) -> list[Any]:
    return [p for p in m.get(name, []) if all(p.attributes.get(k) == v for k, v in attrs.items())]


async def test_call_metrics_both_sides() -> None:
    otel = OTel(tracing=False)
    async with (
        serve(server.with_suite(otel.suite)) as (svr, _),
        connect(svr, client.with_suite(otel.suite)) as cli,
    ):
        for _ in range(3):
            await cli.Unary(Req(message="ok"))
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="error:x"))
        assert [r.seq async for r in cli.ServerStream(Req(message="s", seq=4))] == [0, 1, 2, 3]
    m = otel.metrics()
    for side in ("client", "server"):
        (ok,) = points(m, f"rpc.{side}.duration", **{"rpc.method": "Unary", "rpc.grpc.status_code": 0})
        assert ok.count == 3 and ok.sum >= 0
        (failed,) = points(m, f"kitex.{side}.errors", **{"rpc.grpc.status_code": 13})
        assert failed.value == 1
        calls = points(m, f"kitex.{side}.calls", **{"rpc.method": "Unary"})
        assert sum(p.value for p in calls) == 4
        assert all(p.value == 0 for p in m[f"kitex.{side}.in_flight"])
        (streamed,) = points(m, f"rpc.{side}.responses_per_rpc", **{"rpc.method": "ServerStream"})
        assert streamed.sum == 4 and streamed.count == 1
        (requests,) = points(m, f"rpc.{side}.requests_per_rpc", **{"rpc.method": "ServerStream"})
        assert requests.sum == 1
        assert all(p.attributes["rpc.system"] == "grpc" for p in m[f"rpc.{side}.duration"])


async def test_in_flight_while_a_call_is_running() -> None:
    otel = OTel(tracing=False)
    async with (
        serve(server.with_suite(otel.suite)) as (svr, handler),
        connect(svr, client.with_suite(otel.suite)) as cli,
    ):
        task = asyncio.create_task(cli.Unary(Req(message="gate")))
        await asyncio.wait_for(handler.entered.wait(), 5)
        m = otel.metrics()
        assert [p.value for p in m["kitex.server.in_flight"]] == [1]
        assert [p.value for p in m["kitex.client.in_flight"]] == [1]
        handler.release.set()
        await asyncio.wait_for(task, 5)


async def test_rejections_and_pool_sizes() -> None:
    otel = OTel(tracing=False)

    def breaker(next_endpoint: Endpoint) -> Endpoint:
        """What a governance circuit breaker does on an open circuit."""

        async def mw(ri: RPCInfo, request: Any) -> Any:
            if request.message == "reject":
                api.record_rejection(api.REJECT_CIRCUIT_BREAKER, ri)
                raise ServiceCircuitBreakError("open")
            return await next_endpoint(ri, request)

        return mw

    unregister = api.register_pool_size(lambda: [({"address": "10.0.0.1:1", "transport": "test"}, 3)])
    try:
        async with (
            serve() as (svr, _),
            connect(svr, client.with_suite(otel.suite), client.with_middleware(breaker)) as cli,
        ):
            with pytest.raises(ServiceCircuitBreakError):
                await cli.Unary(Req(message="reject"))
            api.record_rejection(api.REJECT_CONNECTION_LIMIT)  # no RPCInfo: the default recorder
        m = otel.metrics()
        (cb,) = points(m, "kitex.client.rejections", kind="circuit_breaker")
        assert cb.value == 1 and cb.attributes["rpc.method"] == "Unary"
        (conn,) = points(m, "kitex.client.rejections", kind="connection_limit")
        assert conn.value == 1
        (pool,) = points(m, "kitex.client.connection_pool.size", address="10.0.0.1:1")
        assert pool.value == 3
        (failed,) = points(m, "kitex.client.errors", **{"rpc.grpc.status_code": 14})
        assert failed.value == 1
    finally:
        unregister()
        api.set_default_recorder(None)
    assert api.pool_sizes() == []


def test_record_rejection_is_a_noop_without_metrics() -> None:
    from tests.observability.helpers import fake_rpcinfo

    previous = api.set_default_recorder(None)
    try:
        api.record_rejection(api.REJECT_QPS_LIMIT, fake_rpcinfo())
        api.record_rejection(api.REJECT_QPS_LIMIT)
    finally:
        api.set_default_recorder(previous)


async def _scrape(address: str, path: str = "/metrics") -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return head, body


async def test_prometheus_endpoint_real_scrape() -> None:
    otel = OTel(tracing=False)
    endpoint = PrometheusEndpoint(otel.reader, "127.0.0.1:0")
    async with (
        serve(server.with_suite(otel.suite), server.with_metrics_endpoint(endpoint)) as (svr, _),
        connect(svr, client.with_suite(otel.suite)) as cli,
    ):
        await cli.Unary(Req(message="a"))
        await cli.Unary(Req(message="b"))
        assert endpoint.address.startswith("127.0.0.1:")
        head, body = await _scrape(endpoint.address)
        assert head.startswith("HTTP/1.1 200") and "text/plain; version=0.0.4" in head
        missing, _ = await _scrape(endpoint.address, "/nope")
        assert missing.startswith("HTTP/1.1 404")
        address = endpoint.address
    lines = body.splitlines()
    assert "# TYPE kitex_server_calls_total counter" in lines
    assert "# TYPE rpc_server_duration histogram" in lines
    calls = [ln for ln in lines if ln.startswith("kitex_server_calls_total{")]
    assert len(calls) == 1 and calls[0].endswith(" 2") and 'rpc_method="Unary"' in calls[0]
    count = next(ln for ln in lines if ln.startswith("rpc_server_duration_count{"))
    assert count.endswith(" 2")
    inf = next(ln for ln in lines if ln.startswith("rpc_server_duration_bucket{") and 'le="+Inf"' in ln)
    assert inf.endswith(" 2")
    # Closed with the server.
    with pytest.raises(OSError):
        await _scrape(address)


async def test_endpoint_binds_any_address_and_shows_the_kitex_series_beside() -> None:
    from kitex_grpc.observability.kitex_prom import KitexPrometheus
    from kitex_grpc.observability.otel import OpenTelemetrySuite

    kp = KitexPrometheus()
    suite = OpenTelemetrySuite(tracing=False, metrics_endpoint="0.0.0.0:0", kitex_prometheus=kp)
    async with serve(server.with_suite(suite)) as (svr, _), connect(svr) as cli:
        await cli.Unary(Req(message="a"))
        assert suite.metrics_endpoint.address.startswith("0.0.0.0:")
        port = suite.metrics_endpoint.address.rpartition(":")[2]
        head, body = await _scrape(f"127.0.0.1:{port}")
    assert head.startswith("HTTP/1.1 200")
    lines = body.splitlines()
    assert "# TYPE rpc_server_duration histogram" in lines
    assert (
        'kitex_server_throughput{callee="unknown",caller="unknown",method="Unary",retry="0",'
        'status="succeed"} 1' in lines
    )
    with pytest.raises(ValueError, match="host:port"):
        PrometheusEndpoint(suite.metric_reader, "9464")
    assert render(None) == ""


def test_one_metrics_page_per_suite() -> None:
    from kitex_grpc.observability.kitex_prom import KitexPrometheus
    from kitex_grpc.observability.otel import OpenTelemetrySuite

    with pytest.raises(ValueError, match="metrics_endpoint and kitex_prometheus's own address"):
        OpenTelemetrySuite(metrics_endpoint="127.0.0.1:0", kitex_prometheus=KitexPrometheus("127.0.0.1:0"))
    # each alone gives the server its page
    own = KitexPrometheus("127.0.0.1:0")
    parts = OpenTelemetrySuite(tracing=False, kitex_prometheus=own).server_observers()
    assert parts.metrics_endpoint is own.endpoint


async def test_governance_rejections_are_counted() -> None:
    """The real ACL, concurrency limiter and circuit breaker report their rejections."""
    from kitex_grpc.governance import CBConfig, CBSuite

    otel = OTel(tracing=False)
    breaker = CBSuite(service_config=CBConfig(enable=True, err_rate=0.5, min_sample=2))
    deny = lambda ri, req: "denied" if req.message == "deny" else None  # noqa: E731
    async with (
        serve(
            server.with_suite(otel.suite), server.with_concurrency_limit(1), server.with_acl_rules(deny)
        ) as (svr, handler),
        connect(svr, client.with_suite(otel.suite)) as cli,
        connect(svr, client.with_suite(otel.suite), client.with_circuit_breaker(breaker)) as guarded,
    ):
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="deny"))  # server ACL
        held = asyncio.create_task(cli.Unary(Req(message="gate")))
        await asyncio.wait_for(handler.entered.wait(), 5)
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="over"))  # concurrency limit 1
        handler.release.set()
        await asyncio.wait_for(held, 5)
        for _ in range(2):  # two failures of two samples open the breaker
            with pytest.raises(KitexError):
                await guarded.Unary(Req(message="error:boom"))
        with pytest.raises(ServiceCircuitBreakError):
            await guarded.Unary(Req(message="ok"))
    m = otel.metrics()
    assert [p.value for p in points(m, "kitex.server.rejections", kind="acl")] == [1]
    assert [p.value for p in points(m, "kitex.server.rejections", kind="concurrency_limit")] == [1]
    assert [p.value for p in points(m, "kitex.client.rejections", kind="circuit_breaker")] == [1]
