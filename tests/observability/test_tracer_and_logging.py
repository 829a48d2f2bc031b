"""The tracer hook, the access log, no per-call logging by default, and diagnostics."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gen.echo.v1 import echo_pb2
from kitex_grpc import client, server
from kitex_grpc.errors import KitexError, RPCTimeoutError
from kitex_grpc.observability import CompositeTracer, compose
from kitex_grpc.observability.suite import Observers
from kitex_grpc.observability.tracer import NOOP_TRACER, run_traced
from kitex_grpc.rpcinfo import RPCInfo
from tests.observability.helpers import fake_rpcinfo
from tests.support import connect, serve

Req = echo_pb2.EchoRequest


class Recorder:
    """A tracer that records what it saw."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.finished: list[RPCInfo] = []

    def start(self, ri: RPCInfo) -> None:
        assert ri.stats.end_time is None
        self.log.append(f"{self.name}.start {ri.method.name}")

    def finish(self, ri: RPCInfo) -> None:
        assert ri.stats.end_time is not None  # stats are complete at finish
        self.log.append(f"{self.name}.finish {ri.method.name}")
        self.finished.append(ri)


def test_compose_none_when_unused() -> None:
    assert compose([]) is None
    assert compose([NOOP_TRACER]) is None
    with pytest.raises(TypeError):
        compose([object()])  # type: ignore[list-item]


def test_composite_order_and_failure_isolation(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []

    class Broken:
        def start(self, ri: RPCInfo) -> None:
            raise RuntimeError("boom")

        def finish(self, ri: RPCInfo) -> None:
            raise RuntimeError("boom")

    tracer = CompositeTracer([Recorder("a", log), Broken(), Recorder("b", log)])
    from tests.observability.helpers import fake_rpcinfo

    ri = fake_rpcinfo()
    tracer.start(ri)
    ri.stats.finish(None)
    tracer.finish(ri)
    assert log == ["a.start Unary", "b.start Unary", "b.finish Unary", "a.finish Unary"]
    assert sum("failed in" in r.getMessage() for r in caplog.records) == 2


async def test_client_and_server_tracers_see_every_call_kind() -> None:
    log: list[str] = []
    cli_tr, svr_tr = Recorder("c", log), Recorder("s", log)
    async with serve(server.with_tracer(svr_tr)) as (svr, _), connect(svr, client.with_tracer(cli_tr)) as cli:
        await cli.Unary(Req(message="hi"))
        replies = [r.seq async for r in cli.ServerStream(Req(message="s", seq=2))]
        assert replies == [0, 1]
        cs = await cli.ClientStream()
        await cs.send(Req(message="a"))
        await cs.send(Req(message="b"))
        assert (await cs.close_and_recv()).message == "a,b"
        bidi = await cli.Bidi()
        await bidi.send(Req(message="x"))
        assert (await bidi.recv()).message == "x"
        await bidi.close_send()
        assert [r async for r in bidi] == []
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="error:bad"))
    methods = [ri.method.name for ri in cli_tr.finished]
    assert methods == ["Unary", "ServerStream", "ClientStream", "Bidi", "Unary"]
    assert cli_tr.finished[-1].stats.error is not None
    assert cli_tr.finished[1].stats.recv_messages == 2
    assert cli_tr.finished[2].stats.send_messages == 2
    assert sorted(ri.method.name for ri in svr_tr.finished) == sorted(methods)
    # Client start precedes the server's, and the client finishes unary calls after the server.
    assert log.index("c.start Unary") < log.index("s.start Unary") < log.index("s.finish Unary")


async def test_no_log_line_per_call_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve() as (svr, _), connect(svr) as cli:
        for i in range(5):
            await cli.Unary(Req(message=f"m{i}"))
        _ = [r async for r in cli.ServerStream(Req(message="s"))]
    per_call = [r for r in caplog.records if r.name.startswith("kitex_grpc")]
    assert per_call == [], [r.getMessage() for r in per_call]


async def test_access_log_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kitex_grpc.access")
    async with (
        serve(server.with_access_log()) as (svr, _),
        connect(svr, client.with_access_log(logging.getLogger("my.access"))) as cli,
    ):
        caplog.set_level(logging.INFO, logger="my.access")
        await cli.Unary(Req(message="hi"))
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="error:x"))
    records = [r for r in caplog.records if r.name in ("kitex_grpc.access", "my.access")]
    by_side = {(r.__dict__["side"], r.__dict__["status"]) for r in records}
    assert by_side == {("client", "OK"), ("server", "OK"), ("client", "INTERNAL"), ("server", "INTERNAL")}
    for r in records:
        fields = r.__dict__
        assert fields["service"] == "echo.v1.Echo" and fields["method"] == "Unary"
        assert fields["peer"] and isinstance(fields["latency"], float) and fields["latency"] >= 0
        assert r.levelno == (logging.INFO if fields["status"] == "OK" else logging.WARNING)
    client_ok = next(r for r in records if r.name == "my.access" and r.__dict__["status"] == "OK")
    assert client_ok.__dict__["peer"] == svr.address  # the instance the client called


async def test_describe_client_and_server() -> None:
    async with (
        serve(server.with_access_log(), server.with_health(), server.with_exit_wait_time(1)) as (svr, _),
        connect(svr, client.with_rpc_timeout(0.5), client.with_tracer(Recorder("c", []))) as cli,
    ):
        text = cli.client.describe()
        assert "with_host_ports(" in text and "with_rpc_timeout(0.5)" in text and "with_tracer(" in text
        assert "rpc_timeout = 0.5  *" in text
        assert "chain: rpc_timeout" in text
        stext = svr.describe()
        assert "Server (serving)" in stext
        assert "grpc.health.v1.Health" in stext and "echo.v1.Echo" in stext
        assert "with_health(" in stext and "with_exit_wait_time(1.0)" in stext
        assert "HealthHook" in stext


def test_once_only_and_suite_records() -> None:
    with pytest.raises(ValueError, match="more than once"):
        server.new_server(server.with_health(), server.with_health())

    class Suite:
        def client_options(self) -> list[client.ClientOption]:
            return [client.with_rpc_timeout(1), client.with_tag("k", "v")]

        def __repr__(self) -> str:
            return "Suite()"

    cli = client.new_client(
        __import__("gen.echo.v1.echo_kitex", fromlist=["x"]).ECHO_SERVICE_INFO,
        "echo",
        client.with_suite(Suite()),
    )
    assert cli.options.rpc_timeout == 1.0 and cli.options.tags == (("k", "v"),)
    assert [r.name for r in cli.options.records] == ["with_suite"]
    assert "with_rpc_timeout(1.0)" in cli.options.records[0].value


class _PartsSuite:
    """A suite in the observability layer's shape: parts, not options."""

    def __init__(self, parts: Observers) -> None:
        self.parts = parts

    def client_observers(self) -> Observers:
        return self.parts

    def server_observers(self) -> Observers:
        return self.parts

    def __repr__(self) -> str:
        return "PartsSuite()"


def test_suite_parts_become_the_options_of_their_side() -> None:
    first, second = Recorder("a", []), Recorder("b", [])

    def send(next_send: object) -> object:
        return next_send

    def instance(next_endpoint: object) -> object:
        return next_endpoint

    suite = _PartsSuite(
        Observers(tracers=(first, second), instance_middlewares=(instance,), stream_send_middlewares=(send,))
    )
    echo_info = __import__("gen.echo.v1.echo_kitex", fromlist=["x"]).ECHO_SERVICE_INFO
    cli = client.new_client(echo_info, "echo", client.with_suite(suite))  # type: ignore[arg-type]
    assert cli.options.tracers == (first, second)  # in the record's order
    assert cli.options.instance_middlewares == (instance,)
    assert cli.options.stream_send_middlewares == (send,)
    assert [r.name for r in cli.options.records] == ["with_suite"]
    applied = cli.options.records[0].value
    assert "with_tracer(" in applied and "with_instance_middleware(" in applied
    # a part of the other side is refused with the suite named, not dropped
    with pytest.raises(TypeError, match=r"PartsSuite\(\) gives a server instance middlewares"):
        server.with_suite(suite)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"PartsSuite\(\) gives a client lifecycle hooks"):
        client.with_suite(_PartsSuite(Observers(metrics_endpoint=object())))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("deadline_offset", "expected"), [(-0.001, RPCTimeoutError), (60.0, asyncio.CancelledError)]
)
async def test_a_cancellation_at_the_deadline_is_recorded_as_a_timeout(
    deadline_offset: float, expected: type[BaseException]
) -> None:
    # grpcio cancels a served call's task when grpc-timeout passes; its stats should say timeout.
    ri = fake_rpcinfo()
    ri.deadline = time.monotonic() + deadline_offset

    async def cancelled(ri: RPCInfo, request: object) -> object:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):  # the caller still sees the cancellation itself
        await run_traced(cancelled, ri, None, NOOP_TRACER)
    assert type(ri.stats.error) is expected


async def test_without_a_tracer_the_endpoint_runs_as_is_and_the_stats_end_is_not_recorded() -> None:
    ri = fake_rpcinfo()

    async def endpoint(ri: RPCInfo, request: object) -> object:
        return ("reply", request)

    awaitable = endpoint(ri, 1)
    awaitable.close()
    direct = run_traced(endpoint, ri, 2, None)
    assert type(direct) is type(awaitable) and direct.cr_code is endpoint.__code__  # type: ignore[attr-defined]
    assert await direct == ("reply", 2)
    assert ri.stats.end_time is None
    assert await run_traced(endpoint, ri, 3, NOOP_TRACER) == ("reply", 3)
    assert ri.stats.end_time is not None and ri.stats.error is None
