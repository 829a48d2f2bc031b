"""OpenTelemetry spans end to end over real loopback sockets: attributes, parentage, propagation keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client, metainfo, rpcinfo, server
from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import KitexError
from kitex_grpc.rpcinfo import RPCInfo
from tests.observability.otel_support import OTel, named, parent_id, span_id, trace_id, traceparent
from tests.support import EchoService, connect, serve

Req = echo_pb2.EchoRequest
NAME = "echo.v1.Echo/Unary"


@pytest.mark.parametrize("transport", ["GRPC", "GRPC_H2"])
async def test_unary_client_attempt_and_server_spans(transport: str) -> None:
    otel = OTel()
    async with (
        serve(server.with_suite(otel.suite), server.with_transport_protocol(transport)) as (svr, _),
        connect(svr, client.with_suite(otel.suite), client.with_transport_protocol(transport)) as cli,
    ):
        await cli.Unary(Req(message="hi"))
        spans = await otel.wait_spans(3)
    (call,) = [s for s in named(spans, NAME) if s.kind is SpanKind.CLIENT]
    (srv,) = [s for s in named(spans, NAME) if s.kind is SpanKind.SERVER]
    (attempt,) = named(spans, "Attempt." + NAME)
    assert call.parent is None  # a root: no span was current
    assert parent_id(attempt) == span_id(call)
    assert parent_id(srv) == span_id(attempt)
    assert srv.parent is not None and srv.parent.is_remote
    assert len({trace_id(s) for s in spans}) == 1
    for span in (call, srv):
        attrs = span.attributes or {}
        assert attrs["rpc.system"] == "grpc"
        assert attrs["rpc.service"] == "echo.v1.Echo"
        assert attrs["rpc.method"] == "Unary"
        assert attrs["rpc.grpc.status_code"] == 0
        assert attrs["server.port"] == int(svr.address.rpartition(":")[2])
    assert (call.attributes or {})["server.address"] == "127.0.0.1"
    assert (srv.attributes or {})["network.peer.address"] == "127.0.0.1"
    assert (attempt.attributes or {})["kitex.attempt"] == 1
    assert call.status.status_code is StatusCode.UNSET


async def test_errors_set_span_status_by_side() -> None:
    otel = OTel()
    async with (
        serve(server.with_suite(otel.suite)) as (svr, _),
        connect(svr, client.with_suite(otel.suite)) as cli,
    ):
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="error:bad"))
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="biz:7:nope"))
        spans = await otel.wait_spans(6)
    calls = [s for s in named(spans, NAME) if s.kind is SpanKind.CLIENT]
    servers = [s for s in named(spans, NAME) if s.kind is SpanKind.SERVER]
    assert [s.status.status_code for s in calls] == [StatusCode.ERROR, StatusCode.ERROR]
    assert all((s.attributes or {})["rpc.grpc.status_code"] == 13 for s in calls + servers)
    # INTERNAL is a server-side error per the gRPC conventions; the exception is recorded.
    assert all(s.status.status_code is StatusCode.ERROR for s in servers)
    assert any(e.name == "exception" for e in calls[0].events)


async def test_stream_message_events() -> None:
    otel = OTel()
    async with (
        serve(server.with_suite(otel.suite)) as (svr, _),
        connect(svr, client.with_suite(otel.suite)) as cli,
    ):
        bidi = await cli.Bidi()
        for m in ("a", "b"):
            await bidi.send(Req(message=m))
            assert (await bidi.recv()).message == m
        await bidi.close_send()
        assert [r async for r in bidi] == []
        assert [r.seq async for r in cli.ServerStream(Req(message="s", seq=3))] == [0, 1, 2]
        spans = await otel.wait_spans(4)
    bidi_client = next(s for s in spans if s.name == "echo.v1.Echo/Bidi" and s.kind is SpanKind.CLIENT)
    bidi_server = next(s for s in spans if s.name == "echo.v1.Echo/Bidi" and s.kind is SpanKind.SERVER)
    assert parent_id(bidi_server) == span_id(bidi_client)  # streams: no attempt span

    def kinds(span: Any) -> list[tuple[str, int]]:
        return [(e.attributes["rpc.message.type"], e.attributes["rpc.message.id"]) for e in span.events]

    assert kinds(bidi_client) == [("SENT", 1), ("RECEIVED", 1), ("SENT", 2), ("RECEIVED", 2)]
    assert kinds(bidi_server) == [("RECEIVED", 1), ("SENT", 1), ("RECEIVED", 2), ("SENT", 2)]
    ss_client = next(s for s in spans if s.name == "echo.v1.Echo/ServerStream" and s.kind is SpanKind.CLIENT)
    assert [k for k in kinds(ss_client) if k[0] == "RECEIVED"] == [
        ("RECEIVED", 1),
        ("RECEIVED", 2),
        ("RECEIVED", 3),
    ]
    assert all("rpc.message.uncompressed_size" in e.attributes for e in ss_client.events)


class Relay(EchoService):
    """Handles Unary by calling a downstream Echo server (the middle hop)."""

    def __init__(self, downstream: echo_kitex.EchoClient) -> None:
        super().__init__()
        self.downstream = downstream

    async def Unary(self, request: Req) -> echo_pb2.EchoReply:
        return await self.downstream.Unary(Req(message="down:" + request.message))


@pytest.mark.parametrize("transport", ["GRPC", "GRPC_H2"])
async def test_one_trace_across_two_hops(transport: str) -> None:
    otel = OTel()
    tp = server.with_transport_protocol(transport)
    ctp = client.with_transport_protocol(transport)
    async with (
        serve(server.with_suite(otel.suite), tp) as (leaf, _),
        connect(leaf, client.with_suite(otel.suite), ctp) as down,
        serve(server.with_suite(otel.suite), tp, handler=Relay(down)) as (mid, _),
        connect(mid, client.with_suite(otel.suite), ctp) as cli,
    ):
        reply = await cli.Unary(Req(message="x"))
        assert reply.message == "down:x"
        spans = await otel.wait_spans(6)
    assert len({trace_id(s) for s in spans}) == 1
    clients = sorted(
        (s for s in named(spans, NAME) if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    servers = sorted(
        (s for s in named(spans, NAME) if s.kind is SpanKind.SERVER), key=lambda s: s.start_time or 0
    )
    attempts = sorted(named(spans, "Attempt." + NAME), key=lambda s: s.start_time or 0)
    assert len(clients) == len(servers) == len(attempts) == 2
    root, downstream_call = clients
    mid_server, leaf_server = servers
    assert root.parent is None
    assert parent_id(attempts[0]) == span_id(root)
    assert parent_id(mid_server) == span_id(attempts[0])
    assert parent_id(downstream_call) == span_id(mid_server)  # the handler's outgoing call is a child
    assert parent_id(attempts[1]) == span_id(downstream_call)
    assert parent_id(leaf_server) == span_id(attempts[1])


def retry_once(next_endpoint: Endpoint) -> Endpoint:
    """A stand-in for the retry container: a failed first attempt is tried again as attempt 2."""

    async def retry(ri: RPCInfo, request: Any) -> Any:
        try:
            return await next_endpoint(ri, Req(message="error:first"))
        except KitexError:
            return await next_endpoint(ri.copy_for_attempt(2), request)

    return retry


async def test_retries_are_separate_attempts_in_one_trace() -> None:
    otel = OTel()
    async with (
        serve(server.with_suite(otel.suite)) as (svr, _),
        connect(svr, client.with_middleware(retry_once), client.with_suite(otel.suite)) as cli,
    ):
        assert (await cli.Unary(Req(message="ok"))).message == "ok"
        spans = await otel.wait_spans(5)
    (call,) = [s for s in named(spans, NAME) if s.kind is SpanKind.CLIENT]
    attempts = sorted(named(spans, "Attempt." + NAME), key=lambda s: (s.attributes or {})["kitex.attempt"])
    servers = [s for s in named(spans, NAME) if s.kind is SpanKind.SERVER]
    assert [(a.attributes or {})["kitex.attempt"] for a in attempts] == [1, 2]
    assert all(parent_id(a) == span_id(call) for a in attempts)
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[1].status.status_code is StatusCode.UNSET
    assert sorted(parent_id(s) or 0 for s in servers) == sorted(span_id(a) for a in attempts)
    assert len({trace_id(s) for s in spans}) == 1
    assert call.status.status_code is StatusCode.UNSET


async def test_grpc_propagation_keys() -> None:
    """Over gRPC: plain traceparent metadata, and Kitex transient metainfo (rpc-transit-traceparent)."""
    otel = OTel()
    seen: dict[str, Any] = {}

    def capture(next_endpoint: Endpoint) -> Endpoint:
        async def mw(ri: RPCInfo, request: Any) -> Any:
            seen["metadata"] = dict((k, v) for k, v in ri.metadata if isinstance(v, str))
            seen["transient"] = metainfo.get_all_values()
            return await next_endpoint(ri, request)

        return mw

    async with (
        serve(server.with_middleware(capture)) as (svr, _),
        connect(svr, client.with_suite(otel.suite)) as cli,
    ):
        await cli.Unary(Req(message="hi"))
    (attempt,) = named(otel.spans(), "Attempt." + NAME)
    expected = traceparent(attempt)
    assert seen["metadata"]["traceparent"] == expected
    assert seen["metadata"]["rpc-transit-traceparent"] == expected
    assert seen["transient"]["TRACEPARENT"] == expected  # how Kitex reads it back over HTTP/2


async def test_ttheader_propagation_uses_rpc_transit_strinfo() -> None:
    """Over TTHeader the trace context travels as RPC_TRANSIT_traceparent, as obs-opentelemetry sends."""
    from tests.ttheader.support import Req as TReq
    from tests.ttheader.support import connect as tconnect
    from tests.ttheader.support import serve as tserve

    otel = OTel()
    seen: dict[str, str] = {}

    def capture(next_endpoint: Endpoint) -> Endpoint:
        async def mw(ri: RPCInfo, request: Any) -> Any:
            seen.update((k, v) for k, v in ri.metadata if isinstance(v, str))
            return await next_endpoint(ri, request)

        return mw

    async with (
        tserve(server.with_middleware(capture), server.with_suite(otel.suite)) as (svr, _),
        tconnect(svr.address, "ttheader", client.with_suite(otel.suite)) as cli,
    ):
        reply = await cli.echo(TReq(message="meta"))
        spans = await otel.wait_spans(3)
    (attempt,) = [s for s in spans if s.name.startswith("Attempt.")]
    expected = traceparent(attempt)
    assert seen["RPC_TRANSIT_traceparent"] == expected
    assert "traceparent" not in seen  # no plain key outside gRPC
    assert json.loads(reply.message)["transient"]["traceparent"] == expected
    (srv,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert parent_id(srv) == span_id(attempt)
    assert (srv.attributes or {})["rpc.system"] == "apache_thrift"
    assert "rpc.grpc.status_code" not in (srv.attributes or {})


async def test_server_extracts_go_style_metainfo_only() -> None:
    """A Go Kitex client without gRPC metadata injection sends only rpc-transit-traceparent."""
    otel = OTel(metrics=False)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    got: dict[str, Any] = {}

    class Probe(EchoService):
        async def Unary(self, request: Req) -> echo_pb2.EchoReply:
            from opentelemetry import trace

            got["ctx"] = trace.get_current_span().get_span_context()
            ri = rpcinfo.current()
            assert ri is not None
            return echo_pb2.EchoReply(message="ok")

    async with serve(server.with_suite(otel.suite), handler=Probe()) as (svr, _), connect(svr) as cli:
        with metainfo.with_value("traceparent", parent):
            await cli.Unary(Req(message="x"))
    (srv,) = await otel.wait_spans(1)
    assert f"{trace_id(srv):032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert parent_id(srv) == 0xB7AD6B7169203331
    assert got["ctx"].span_id == span_id(srv)  # the server span is current in the handler


async def test_governance_failure_retry_shows_two_attempts() -> None:
    """The real retry container (governance) copies RPCInfo per attempt; each gets its own span."""
    import asyncio

    from kitex_grpc.governance.policy import FailurePolicy

    class FlakyOnce(EchoService):
        async def Unary(self, request: Req) -> echo_pb2.EchoReply:
            self.calls += 1
            if self.calls == 1:
                await asyncio.Event().wait()  # the first attempt times out (the default retry case)
            return echo_pb2.EchoReply(message=request.message)

    otel = OTel(metrics=False)
    async with (
        serve(server.with_suite(otel.suite), handler=FlakyOnce()) as (svr, _),
        connect(
            svr,
            client.with_rpc_timeout(0.3),
            client.with_failure_retry(FailurePolicy()),
            client.with_suite(otel.suite),
        ) as cli,
    ):
        assert (await cli.Unary(Req(message="ok"))).message == "ok"
        spans = await otel.wait_spans(5)
    (call,) = [s for s in named(spans, NAME) if s.kind is SpanKind.CLIENT]
    attempts = sorted(named(spans, "Attempt." + NAME), key=lambda s: (s.attributes or {})["kitex.attempt"])
    assert [(a.attributes or {})["kitex.attempt"] for a in attempts] == [1, 2]
    assert all(parent_id(a) == span_id(call) for a in attempts)
    assert (attempts[0].attributes or {})["rpc.grpc.status_code"] == 4  # DEADLINE_EXCEEDED
    assert len({trace_id(s) for s in spans}) == 1
