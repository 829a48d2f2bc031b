"""One trace across Python and Go Kitex (v0.16.3 + kitex-contrib/obs-opentelemetry v0.3.0).

The Go binaries run with ``-otel``: obs-opentelemetry's server/client suite, a tracer provider that
prints every finished span as a JSON line to ``-otel-spans FILE``, and the propagator of
obs-opentelemetry's provider package (b3, ot, baggage, W3C trace context). The Python side uses
kitex_grpc's OpenTelemetrySuite with in-memory exporters. Propagation is the W3C ``traceparent``
carried as a transient metainfo value: header ``rpc-transit-traceparent`` over gRPC, string info key
``RPC_TRANSIT_traceparent`` over TTHeader (obs-opentelemetry tracing/middleware.go).

The Python SDK (W3C Trace Context Level 2) marks new trace ids random, trace flags ``03``; otel-go
v1.37.0 (what obs-opentelemetry v0.3.0 requires) rejects a version-00 traceparent with flags > 2
(propagation/trace_context.go) and would start a new trace. kitex_grpc therefore sends only the
sampled bit, as otel-go's own injector does (``test_default_sdk_propagator_reaches_otel_go_v1_37``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import TransportProtocol, client, rpcinfo, server
from kitex_grpc.endpoint import Endpoint
from kitex_grpc.rpcinfo import RPCInfo
from tests.interop.kitex_peer import KitexConventionEcho, go_server, run_go_client_args
from tests.observability.otel_support import OTel, named, parent_id, span_id, trace_id
from tests.ttheader import support as tt

pytestmark = pytest.mark.interop

Req = echo_pb2.EchoRequest
PB_NAME = "echo.v1.Echo/Unary"
THRIFT_NAME = "echo.Echo/echo"  # Go: <namespace>.<Service>/<method>
PY_THRIFT_NAME = "Echo/echo"  # kitex_grpc's Thrift spans carry no package


def hex_trace(value: int) -> str:
    return f"{value:032x}"


def hex_span(value: int) -> str:
    return f"{value:016x}"


@dataclass
class GoOtelServer:
    pb: str
    thrift: str
    spans_file: Path

    def spans(self) -> list[dict[str, Any]]:
        return read_spans(self.spans_file)

    async def wait_new_span(self, after: int, seconds: float = 5.0) -> dict[str, Any]:
        """The first span written after the first ``after`` lines (polled, bounded)."""
        for _ in range(int(seconds / 0.02)):
            if len(spans := self.spans()) > after:
                return spans[after]
            await asyncio.sleep(0.02)
        raise AssertionError(f"the Go server wrote no span within {seconds} s")

    async def wait_span(self, trace: str, kind: str, seconds: float = 5.0) -> dict[str, Any]:
        """The Go span of ``kind`` in ``trace``. It is written when the span ends, just after the
        reply was sent, and there is no event for that: poll the file, bounded."""
        for _ in range(int(seconds / 0.02)):
            found = [s for s in self.spans() if s["trace_id"] == trace and s["kind"] == kind]
            if found:
                assert len(found) == 1, found
                return found[0]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no Go {kind} span of trace {trace} within {seconds} s: {self.spans()}")


def read_spans(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a -otel-spans file (a line being written is skipped)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


@pytest.fixture(scope="module")
def go_otel_server(kitex_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoOtelServer]:
    spans_file = tmp_path_factory.mktemp("go-otel") / "server-spans.jsonl"
    with go_server(kitex_bin, "-otel", "-otel-spans", str(spans_file)) as go:
        yield GoOtelServer(go.pb, go.thrift, spans_file)


async def run_go_trace_client(
    bin_dir: Path, address: str, transport: str, spans_file: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the Go client's ``trace`` case with ``-otel``; returns its result and its spans."""
    code, results = await run_go_client_args(
        bin_dir, "-addr", address, "-transport", transport, "-case", "trace", "-otel", "-otel-spans",
        str(spans_file), limit_s=60,
    )  # fmt: skip
    (result,) = results.values()
    assert result["ok"], result["error"]
    assert code == 0
    # spans are exported synchronously when they end, all before the process exits
    return result["result"], read_spans(spans_file)


def go_client_span(spans: list[dict[str, Any]], trace: str, name: str) -> dict[str, Any]:
    (root,) = [s for s in spans if s["trace_id"] == trace and s["name"] == "interop.trace"]
    (call,) = [s for s in spans if s["trace_id"] == trace and s["kind"] == "client"]
    assert call["name"] == name and call["parent_span_id"] == root["span_id"]
    assert call["attributes"]["rpc.system"] == "kitex"
    return call


# ---- Python client -> Go server ----


@pytest.mark.parametrize(
    "protocol", [TransportProtocol.GRPC, TransportProtocol.GRPC_H2], ids=lambda p: p.name
)
async def test_python_client_span_parents_go_server_span_over_grpc(
    go_otel_server: GoOtelServer, protocol: TransportProtocol
) -> None:
    otel = OTel()
    cli = echo_kitex.new_client(
        "echo",
        client.with_host_ports(go_otel_server.pb),
        client.with_transport_protocol(protocol),
        client.with_suite(otel.suite),
    )
    async with cli:
        reply = await cli.Unary(Req(message="meta"))
    spans = await otel.wait_spans(2)
    (call,) = named(spans, PB_NAME)
    (attempt,) = named(spans, "Attempt." + PB_NAME)
    assert call.kind is SpanKind.CLIENT and parent_id(attempt) == span_id(call)
    trace = hex_trace(trace_id(call))

    go_span = await go_otel_server.wait_span(trace, "server")
    # the Go server span joined the Python trace, as a child of the attempt (the span on the wire)
    assert go_span["parent_span_id"] == hex_span(span_id(attempt)) and go_span["parent_remote"]
    assert go_span["name"] == PB_NAME and go_span["attributes"]["request.protocol"] == "GRPC"
    # what Kitex's handler saw: the rpc-transit-traceparent header as transient metainfo (key
    # upper-cased over HTTP/2); obs-opentelemetry reads it after CGIVariableToHTTPHeader
    seen = json.loads(reply.message)["transient"]
    assert seen == {"TRACEPARENT": f"00-{trace}-{hex_span(span_id(attempt))}-01"}


@pytest.mark.parametrize("transport", ["ttheader", "ttheader_framed"])
async def test_python_client_span_parents_go_server_span_over_ttheader(
    go_otel_server: GoOtelServer, transport: str
) -> None:
    otel = OTel()
    async with tt.connect(go_otel_server.thrift, transport, client.with_suite(otel.suite)) as cli:
        reply = await cli.echo(tt.Req(message="meta"))
    spans = await otel.wait_spans(2)
    (call,) = named(spans, PY_THRIFT_NAME)
    (attempt,) = named(spans, "Attempt." + PY_THRIFT_NAME)
    assert call.kind is SpanKind.CLIENT and parent_id(attempt) == span_id(call)
    trace = hex_trace(trace_id(call))

    go_span = await go_otel_server.wait_span(trace, "server")
    assert go_span["parent_span_id"] == hex_span(span_id(attempt)) and go_span["parent_remote"]
    protocol = {"ttheader": "TTHeader", "ttheader_framed": "TTHeader|Framed"}[transport]
    assert go_span["name"] == THRIFT_NAME and go_span["attributes"]["request.protocol"] == protocol
    # TTHeader string info RPC_TRANSIT_traceparent -> transient "traceparent", case kept
    seen = json.loads(reply.message)["transient"]
    assert seen == {"traceparent": f"00-{trace}-{hex_span(span_id(attempt))}-01"}


async def test_default_sdk_propagator_reaches_otel_go_v1_37(go_otel_server: GoOtelServer) -> None:
    """With the SDK's default W3C propagator the trace continues into Go: kitex_grpc sends only the
    sampled bit of the trace flags (the SDK's random flag would make otel-go v1.37 start a new trace)."""
    otel = OTel()
    before = len(go_otel_server.spans())
    cli = echo_kitex.new_client(
        "echo", client.with_host_ports(go_otel_server.pb), client.with_suite(otel.suite)
    )
    async with cli:
        reply = await cli.Unary(Req(message="meta"))
    (attempt,) = named(await otel.wait_spans(2), "Attempt." + PB_NAME)
    sent = json.loads(reply.message)["transient"]["TRACEPARENT"]
    assert sent == f"00-{hex_trace(trace_id(attempt))}-{hex_span(span_id(attempt))}-01"
    go_span = await go_otel_server.wait_new_span(before)
    assert go_span["kind"] == "server"
    assert go_span["trace_id"] == hex_trace(trace_id(attempt))
    assert go_span["parent_span_id"] == hex_span(span_id(attempt)) and go_span["parent_remote"]


# ---- Go client -> Python server ----


class RecordingEcho(KitexConventionEcho):
    """Keeps the gRPC metadata each call arrived with."""

    def __init__(self) -> None:
        self.metadata: list[list[tuple[str, Any]]] = []

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        ri = rpcinfo.current()
        assert ri is not None
        self.metadata.append(list(ri.metadata))
        return await super().Unary(request)


@pytest.mark.parametrize(
    "protocol", [TransportProtocol.GRPC, TransportProtocol.GRPC_H2], ids=lambda p: p.name
)
async def test_go_client_span_parents_python_server_span_over_grpc(
    kitex_bin: Path, tmp_path: Path, protocol: TransportProtocol
) -> None:
    otel = OTel()
    handler = RecordingEcho()
    svr = echo_kitex.new_server(
        handler,
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(protocol),
        server.with_suite(otel.suite),
    )
    await svr.start()
    try:
        result, go_spans = await run_go_trace_client(kitex_bin, svr.address, "grpc", tmp_path / "c.jsonl")
        (py_span,) = await otel.wait_spans(1)
    finally:
        await svr.stop()
    trace = result["trace_id"]
    go_call = go_client_span(go_spans, trace, PB_NAME)
    assert py_span.kind is SpanKind.SERVER and py_span.name == PB_NAME
    assert hex_trace(trace_id(py_span)) == trace
    assert py_span.parent is not None and py_span.parent.is_remote
    assert hex_span(py_span.parent.span_id) == go_call["span_id"]

    traceparent = f"00-{trace}-{go_call['span_id']}-01"
    # obs-opentelemetry sends the propagator's fields as rpc-transit-* headers (metainfo), not as
    # plain traceparent metadata (that needs WithEnableGRPCMetadata)
    (md,) = handler.metadata
    headers = {k: v for k, v in md}
    assert headers["rpc-transit-traceparent"] == traceparent
    assert "traceparent" not in headers
    assert result["server_transient"]["TRACEPARENT"] == traceparent
    print("Go client -> Python gRPC metadata:", sorted(headers))
    print("Python server transient metainfo:", result["server_transient"])


@pytest.mark.parametrize("transport", ["ttheader", "ttheader_framed"])
async def test_go_client_span_parents_python_server_span_over_ttheader(
    kitex_bin: Path, tmp_path: Path, transport: str
) -> None:
    otel = OTel()
    strinfo: dict[str, Any] = {}

    def capture(next_endpoint: Endpoint) -> Endpoint:
        async def mw(ri: RPCInfo, request: Any) -> Any:
            strinfo.update((k, v) for k, v in ri.metadata if isinstance(v, str))
            return await next_endpoint(ri, request)

        return mw

    async with tt.serve(server.with_middleware(capture), server.with_suite(otel.suite)) as (svr, _):
        result, go_spans = await run_go_trace_client(kitex_bin, svr.address, transport, tmp_path / "c.jsonl")
        (py_span,) = await otel.wait_spans(1)
    trace = result["trace_id"]
    go_call = go_client_span(go_spans, trace, THRIFT_NAME)
    assert py_span.kind is SpanKind.SERVER and py_span.name == PY_THRIFT_NAME
    assert hex_trace(trace_id(py_span)) == trace
    assert py_span.parent is not None and py_span.parent.is_remote
    assert hex_span(py_span.parent.span_id) == go_call["span_id"]
    # RPC_TRANSIT_traceparent in TTHeader string info: the key's case is kept
    traceparent = f"00-{trace}-{go_call['span_id']}-01"
    assert strinfo["RPC_TRANSIT_traceparent"] == traceparent
    assert result["server_transient"]["traceparent"] == traceparent
    print("Go client -> Python TTHeader string info keys:", sorted(strinfo))
    print("Python server transient metainfo (TTHeader):", result["server_transient"])
