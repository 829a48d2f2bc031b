"""The server seam: one dispatcher call per call kind (``serve_unary(head, request)``) does the
preamble every transport shares, and routing finds a method without a service name."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import metainfo, rpcinfo, server, thrift
from kitex_grpc.endpoint import Endpoint
from kitex_grpc.rpcinfo import RPCInfo
from kitex_grpc.serviceinfo import ServiceInfo
from kitex_grpc.transport.base import CallDispatcher
from kitex_grpc.transport.call_head import CallHead

IDL = Path(__file__).resolve().parents[2] / "idl" / "echo.thrift"
_module: Any = thrift.load(IDL, "seam_echo_thrift")
ECHO = thrift.service_info(_module.Echo)


class Handler:
    def __init__(self) -> None:
        self.seen: list[tuple[RPCInfo | None, str | None, str | None]] = []

    async def echo(self, req: Any) -> Any:
        # What the handler sees is what the dispatcher installed: the current RPCInfo and metainfo.
        self.seen.append(
            (rpcinfo.current(), metainfo.get_value("TRACE"), metainfo.get_persistent_value("TENANT"))
        )
        metainfo.send_backward_value("BACK", "b")
        return _module.EchoReply(message=req.message, payload=req.payload, seq=req.seq)

    async def notify(self, req: Any) -> None:
        return None

    async def fail(self, req: Any) -> Any:
        raise ValueError("no")


class Recorder:
    """A tracer and a middleware: what ran around the handler, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def start(self, ri: RPCInfo) -> None:
        self.events.append("start")

    def finish(self, ri: RPCInfo) -> None:
        self.events.append(f"finish:{ri.stats.error is None}")

    def middleware(self, next_: Endpoint) -> Endpoint:
        async def run(ri: RPCInfo, request: Any) -> Any:
            self.events.append(f"middleware:{ri.method.name}")
            return await next_(ri, request)

        return run


def _request() -> Any:
    """A decoded request as a transport hands it over: the method's argument struct."""
    return _module.Echo.echo_args(req=_module.EchoRequest(message="hi", payload=b"", seq=3))


def _server(recorder: Recorder, handler: Handler, *options: Any) -> kitex_grpc.Server:
    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"),
        server.with_tracer(recorder),
        server.with_middleware(recorder.middleware),
        *options,
    )
    return svr.register_service(ECHO, handler)


async def test_serve_unary_builds_the_rpcinfo_from_the_head_and_runs_the_chain() -> None:
    recorder, handler = Recorder(), Handler()
    dispatcher: CallDispatcher = _server(recorder, handler).dispatcher
    entry = dispatcher.lookup("Echo", "echo")
    assert entry is not None
    metadata: list[tuple[str, str | bytes]] = [("k", "v")]
    deadline = time.monotonic() + 5
    head = CallHead(
        entry,
        metadata,
        {"TRACE": "t"},
        {"TENANT": "x"},
        deadline,
        "10.0.0.1:5",
        "127.0.0.1:8888",
        "caller",
        "m0",
        7,
    )
    reply = await dispatcher.serve_unary(head, _request())
    assert (reply.success.message, reply.success.seq) == ("hi", 3)
    ri = head.ri
    assert ri is not None
    assert handler.seen == [(ri, "t", "x")]
    assert (ri.caller.service_name, ri.caller.method, ri.caller.address) == ("caller", "m0", "10.0.0.1:5")
    assert (ri.callee.service_name, ri.callee.method, ri.callee.address) == ("Echo", "echo", "127.0.0.1:8888")
    assert ri.service is ECHO and ri.method is ECHO.methods["echo"]
    assert ri.metadata is metadata and ri.deadline == deadline and ri.seq_id == 7
    assert head.backward is not None and head.backward.sent == {"BACK": "b"}
    assert recorder.events == ["start", "middleware:echo", "finish:True"]


async def test_serve_unary_without_caller_names_and_with_the_callee_name_given() -> None:
    recorder, handler = Recorder(), Handler()
    dispatcher: CallDispatcher = _server(recorder, handler, server.with_server_basic_info("front")).dispatcher
    entry = dispatcher.lookup("Echo", "fail")
    assert entry is not None
    head = CallHead(entry, [], {}, {}, None, "10.0.0.1:5", "127.0.0.1:8888")
    try:
        await dispatcher.serve_unary(head, _request())
    except Exception as exc:
        failed: Exception | None = exc
    else:
        failed = None
    assert failed is not None  # the handler's error, through the chain's error mapping
    ri = head.ri
    assert ri is not None and head.backward is not None
    assert (ri.caller.service_name, ri.caller.method, ri.seq_id, ri.deadline) == ("", "", 0, None)
    assert ri.callee.service_name == "front"
    assert recorder.events == ["start", "middleware:fail", "finish:False"]


def test_routing_finds_a_service_without_a_name_by_its_method() -> None:
    dispatcher: CallDispatcher = _server(Recorder(), Handler()).dispatcher
    assert dispatcher.search_service("", "echo") is ECHO  # Framed: no isn
    assert dispatcher.search_service("Echo", "echo") is ECHO
    # An unknown name falls back to the only service with the method (Kitex, strict=false)
    assert dispatcher.search_service("Other", "echo") is ECHO
    assert dispatcher.search_service("Other", "nope") is None
    assert dispatcher.search_service("", "nope") is None
    entry = dispatcher.lookup("Echo", "echo")
    assert entry is not None and entry.method is ECHO.methods["echo"]
    assert dispatcher.lookup("Echo", "nope") is None


def test_an_unknown_name_finds_no_service_when_two_have_the_method() -> None:
    twin = ServiceInfo("EchoTwin", ECHO.methods.values(), payload_codec=ECHO.payload_codec)
    svr = _server(Recorder(), Handler())
    svr.register_service(twin, Handler())
    dispatcher: CallDispatcher = svr.dispatcher
    assert dispatcher.search_service("Other", "echo") is None  # ambiguous: Kitex's searchUniqueByMethodName
    assert dispatcher.search_service("EchoTwin", "echo") is twin
    assert dispatcher.search_service("", "echo") is ECHO  # without a name: the first registered
