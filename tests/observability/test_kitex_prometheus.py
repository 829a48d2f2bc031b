"""The monitor-prometheus series (KITEX-WIRE-2 §16.1) after real calls, scraped from the real endpoint."""

from __future__ import annotations

import asyncio
import re

import pytest

from kitex_grpc import client, server
from kitex_grpc.errors import BizStatusError, KitexError
from kitex_grpc.governance import FailurePolicy, ShouldResultRetry
from kitex_grpc.observability import pool_stats
from kitex_grpc.observability.kitex_prom import KitexPrometheus
from kitex_grpc.observability.prom_text import Histogram, go_float
from kitex_grpc.transport_protocol import TransportProtocol
from tests.support import Req, connect, serve

BUCKET_BOUNDS = ["5000", "10000", "25000", "50000", "100000", "250000", "500000", "1e+06", "+Inf"]


async def scrape(address: str, path: str = "/metrics") -> tuple[str, str]:
    """One HTTP/1.1 GET over a real socket: (status line and headers, body)."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 5)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return head, body


def samples(body: str, prefix: str) -> dict[str, str]:
    """``{name{labels}: value}`` of the sample lines starting with ``prefix``."""
    out = {}
    for line in body.splitlines():
        if line.startswith(prefix):
            key, _, value = line.rpartition(" ")
            out[key] = value
    return out


def count(body: str, key: str) -> int:
    """The value of the counter sample ``key``, 0 when absent."""
    return int(float(samples(body, key).get(key, "0")))


def test_numbers_are_written_as_go_writes_them() -> None:
    # strconv.FormatFloat(f, 'g', -1, 64), checked against Go 1.23
    cases = {
        0.0: "0",
        5000.0: "5000",
        250000.0: "250000",
        1e6: "1e+06",
        1234567.0: "1.234567e+06",
        0.5: "0.5",
        0.0001: "0.0001",
        0.00001: "1e-05",
        123.456: "123.456",
        -3.25: "-3.25",
        999999.0: "999999",
        float("inf"): "+Inf",
    }
    assert {f: go_float(f) for f in cases} == cases


def test_histogram_buckets_are_upper_inclusive_and_cumulative() -> None:
    h = Histogram("h", "help", ("a",), (10, 20))
    for value in (5, 10, 11, 20, 21):
        h.observe(("x",), value)
    assert h.lines() == [
        'h_bucket{a="x",le="10"} 2',
        'h_bucket{a="x",le="20"} 4',
        'h_bucket{a="x",le="+Inf"} 5',
        'h_sum{a="x"} 67',
        'h_count{a="x"} 5',
    ]
    with pytest.raises(ValueError, match="increasing"):
        Histogram("h", "help", (), (20, 10))


@pytest.mark.parametrize("tp", [TransportProtocol.GRPC, TransportProtocol.GRPC_H2], ids=lambda p: p.name)
async def test_kitex_series_after_real_calls(tp: TransportProtocol) -> None:
    served = KitexPrometheus("127.0.0.1:0")
    calling = KitexPrometheus()
    async with (
        serve(
            server.with_suite(served),
            server.with_transport_protocol(tp),
            server.with_server_basic_info("echo-svc"),
        ) as (svr, _),
        connect(
            svr,
            client.with_suite(calling),
            client.with_transport_protocol(tp),
            client.with_client_basic_info("py-caller"),
        ) as cli,
    ):
        await cli.Unary(Req(message="a"))
        await cli.Unary(Req(message="b"))
        with pytest.raises(BizStatusError):
            await cli.Unary(Req(message="biz:7:nope"))
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="error:boom"))
        assert served.endpoint is not None
        head, body = await scrape(served.endpoint.address)
        assert head.startswith("HTTP/1.1 200") and "text/plain; version=0.0.4" in head
        missing, _ = await scrape(served.endpoint.address, "/nope")
        assert missing.startswith("HTTP/1.1 404")
        address = served.endpoint.address
    ok = 'callee="echo-svc",caller="py-caller",method="Unary",retry="0",status="succeed"'
    bad = 'callee="echo-svc",caller="py-caller",method="Unary",retry="0",status="error"'
    # A BizStatusError counts as succeed (Kitex: the handler returned nil).
    assert samples(body, "kitex_server_throughput") == {
        f"kitex_server_throughput{{{bad}}}": "1",
        f"kitex_server_throughput{{{ok}}}": "3",
    }
    assert "# TYPE kitex_server_throughput counter" in body.splitlines()
    assert "# TYPE kitex_server_latency_us histogram" in body.splitlines()
    buckets = [ln for ln in body.splitlines() if ln.startswith(f"kitex_server_latency_us_bucket{{{ok}")]
    assert [re.search(r'le="([^"]+)"', ln).group(1) for ln in buckets] == BUCKET_BOUNDS  # type: ignore[union-attr]
    assert buckets[-1].endswith(" 3")
    assert samples(body, f"kitex_server_latency_us_count{{{ok}}}") == {
        f"kitex_server_latency_us_count{{{ok}}}": "3"
    }
    assert "kitex_client_throughput" not in body  # the server's registry has no client calls

    client_side = calling.render()
    c_ok = 'callee="echo",caller="py-caller",method="Unary",retry="0",status="succeed"'
    c_bad = 'callee="echo",caller="py-caller",method="Unary",retry="0",status="error"'
    assert samples(client_side, "kitex_client_throughput") == {
        f"kitex_client_throughput{{{c_bad}}}": "1",
        f"kitex_client_throughput{{{c_ok}}}": "3",
    }
    assert samples(client_side, "kitex_client_latency_us_count") == {
        f"kitex_client_latency_us_count{{{c_bad}}}": "1",
        f"kitex_client_latency_us_count{{{c_ok}}}": "3",
    }
    with pytest.raises(OSError):  # closed with the server
        await scrape(address)


async def test_ttheader_carries_the_caller_into_the_server_series() -> None:
    from tests.ttheader import support as tt

    served = KitexPrometheus()
    named = client.with_client_basic_info("tt-caller")
    async with (
        tt.serve(server.with_suite(served)) as (svr, _),
        tt.connect(svr.address, "ttheader", named) as cli,
    ):
        await cli.echo(tt.Req(message="a"))
        with pytest.raises(KitexError):
            await cli.echo(tt.Req(message="error:x"))
    labels = 'callee="unknown",caller="tt-caller",method="echo",retry="0"'
    assert samples(served.render(), "kitex_server_throughput") == {
        f'kitex_server_throughput{{{labels},status="error"}}': "1",
        f'kitex_server_throughput{{{labels},status="succeed"}}': "1",
    }


def pool_counts(before: str, after: str, address: str, transport: str) -> tuple[int, int]:
    """Dials and reuses of ``address`` between two renders.

    The counters are process-wide by address (a port an earlier test used may come back: CI saw
    dials 10 for 1), so a test compares each with its value before its calls; the gauges come from
    the live pools and are compared exactly.
    """
    labels = f'address="{address}",transport="{transport}"'
    dials = f"kitex_client_conn_pool_dials_total{{{labels}}}"
    reuses = f"kitex_client_conn_pool_reuses_total{{{labels}}}"
    return count(after, dials) - count(before, dials), count(after, reuses) - count(before, reuses)


async def test_ttheader_and_grpcio_pool_series() -> None:
    from tests.ttheader import support as tt

    kp = KitexPrometheus()
    async with tt.serve() as (svr, _):
        address = svr.address
        before = kp.render()
        async with tt.connect(address, "ttheader") as cli:
            await cli.echo(tt.Req(message="a"))
            await cli.echo(tt.Req(message="b"))
            text = kp.render()
    assert pool_counts(before, text, address, "ttheader") == (1, 1)
    prefix = f'kitex_client_conn_pool_connections{{address="{address}",state='
    assert samples(text, prefix) == {
        f'{prefix}"active",transport="ttheader"}}': "0",
        f'{prefix}"idle",transport="ttheader"}}': "1",
    }
    async with serve() as (svr, _):  # grpcio
        before = kp.render()
        async with connect(svr) as grpc_cli:
            for _ in range(3):
                await grpc_cli.Unary(Req(message="x"))
            text = kp.render()
        assert pool_counts(before, text, svr.address, "grpc") == (1, 2)


async def test_unknown_caller_and_the_retry_index() -> None:
    served = KitexPrometheus()
    calling = KitexPrometheus()
    policy = FailurePolicy(
        should_result_retry=ShouldResultRetry(resp_retry=lambda reply, ri: ri.attempt == 1)
    )
    async with (
        serve(server.with_suite(served)) as (svr, _),
        connect(svr, client.with_suite(calling), client.with_failure_retry(policy)) as cli,
    ):
        await cli.Unary(Req(message="x"))
    # no with_client_basic_info: the caller is "unknown"; the call took two attempts: retry="1"
    assert samples(calling.render(), "kitex_client_throughput") == {
        'kitex_client_throughput{callee="echo",caller="unknown",method="Unary",retry="1",status="succeed"}': "1"  # noqa: E501
    }
    assert samples(served.render(), "kitex_server_throughput") == {
        'kitex_server_throughput{callee="unknown",caller="unknown",method="Unary",retry="0",status="succeed"}': "2"  # noqa: E501
    }


async def test_the_endpoint_binds_beyond_loopback_and_refuses_a_bad_address() -> None:
    kp = KitexPrometheus("0.0.0.0:0")
    assert kp.endpoint is not None
    await kp.endpoint.start()
    try:
        assert kp.endpoint.address.startswith("0.0.0.0:")
        port = kp.endpoint.address.rpartition(":")[2]
        head, body = await scrape(f"127.0.0.1:{port}")
        assert head.startswith("HTTP/1.1 200") and samples(body, "kitex_server") == {}
    finally:
        await kp.endpoint.close()
    with pytest.raises(ValueError, match="host:port"):
        KitexPrometheus("no-port")


async def test_pool_series_count_dials_reuses_failures_and_states() -> None:
    kp = KitexPrometheus()
    async with serve(server.with_transport_protocol(TransportProtocol.GRPC_H2)) as (svr, handler):
        address = svr.address
        before = kp.render()
        async with connect(svr, client.with_transport_protocol(TransportProtocol.GRPC_H2)) as cli:
            for i in range(3):
                await cli.Unary(Req(message=str(i)))
            text = kp.render()
            assert pool_counts(before, text, address, "grpc_h2") == (1, 2)
            # label names sorted as client_golang writes them
            prefix = f'kitex_client_conn_pool_connections{{address="{address}",state='
            assert samples(text, prefix) == {
                f'{prefix}"active",transport="grpc_h2"}}': "0",
                f'{prefix}"idle",transport="grpc_h2"}}': "1",
            }
            gated = asyncio.ensure_future(cli.Unary(Req(message="gate")))
            await asyncio.wait_for(handler.entered.wait(), 5)
            assert samples(kp.render(), prefix) == {
                f'{prefix}"active",transport="grpc_h2"}}': "1",
                f'{prefix}"idle",transport="grpc_h2"}}': "0",
            }
            handler.release.set()
            await asyncio.wait_for(gated, 5)
        assert samples(kp.render(), prefix) == {}  # closed: unregistered
    dead = KitexPrometheus()
    async with serve() as (svr, _):
        gone = svr.address
    failures = f'kitex_client_conn_pool_dial_failures_total{{address="{gone}",transport="grpc_h2"}}'
    before = dead.render()
    cli2 = echo_client(gone)
    async with cli2:
        with pytest.raises(KitexError):
            await cli2.Unary(Req(message="x"))
    assert count(dead.render(), failures) - count(before, failures) == 1
    assert pool_stats.MAX_ADDRESSES == 1000


def echo_client(address: str):  # type: ignore[no-untyped-def]
    from gen.echo.v1 import echo_kitex

    return echo_kitex.new_client(
        "echo",
        client.with_host_ports(address),
        client.with_transport_protocol(TransportProtocol.GRPC_H2),
        client.with_connect_timeout(5),
    )


@pytest.mark.parametrize("tp", [TransportProtocol.GRPC, TransportProtocol.GRPC_H2], ids=lambda p: p.name)
async def test_a_stream_is_one_sample_when_it_ends(tp: TransportProtocol) -> None:
    prom = KitexPrometheus()
    async with (
        serve(server.with_suite(prom), server.with_transport_protocol(tp)) as (svr, _),
        connect(svr, client.with_suite(prom), client.with_transport_protocol(tp)) as cli,
    ):
        assert [r.seq async for r in cli.ServerStream(Req(message="s", seq=3))] == [0, 1, 2]
        bidi = await cli.Bidi()
        await bidi.send(Req(message="x"))
        assert (await bidi.recv()).message == "x"
        await bidi.close_send()
        assert [r async for r in bidi] == []
    text = prom.render()
    for side, callee in (("client", "echo"), ("server", "unknown")):
        name = f"kitex_{side}_throughput"
        assert samples(text, name) == {
            f'{name}{{callee="{callee}",caller="unknown",method="{m}",retry="0",status="succeed"}}': "1"
            for m in ("Bidi", "ServerStream")
        }
