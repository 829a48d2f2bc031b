"""TTHeader Streaming against Go Kitex v0.16.3 (code generated with ``kitex -streamx``), both ways.

The Go peers are interop/cmd/ttstream-server and interop/cmd/ttstream-client; both follow the handler
conventions of tests/ttstream/support.py's Handler. Every place where Kitex's wire behaviour differs
from KITEX-WIRE-2.md §11 is asserted here and listed in the README's ttstream section.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from kitex_grpc import callopt, metainfo
from kitex_grpc.errors import BizStatusError, CanceledError, RPCTimeoutError
from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo
from kitex_grpc.transport.ttheader.errors import ApplicationError
from tests.gobuild import make_go_target
from tests.ttstream.support import Request, StreamError, connect, serve, service_info

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".cache" / "interop" / "bin"
LIMIT = 60.0


@pytest.fixture(scope="module")
def binaries() -> Path:
    for name in ("ttstream-server", "ttstream-client"):
        make_go_target(str(BIN / name), f"the Go Kitex {name}")
    return BIN


class GoServer:
    def __init__(self, proc: asyncio.subprocess.Process, address: str) -> None:
        self.proc = proc
        self.address = address

    async def event(self, prefix: str, seconds: float = 10) -> str:
        """The next stdout line (which must start with ``prefix``)."""
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), seconds)).decode()
        assert line.startswith(prefix), line
        return line.strip()


@asynccontextmanager
async def go_server(bin_dir: Path) -> AsyncIterator[GoServer]:
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "ttstream-server"), "-addr", "127.0.0.1:0", stdout=asyncio.subprocess.PIPE
    )
    try:
        server = GoServer(proc, "")
        server.address = (await server.event("READY ", 30)).split("addr=", 1)[1]
        yield server
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def with_missing_method() -> ServiceInfo:
    """StreamService plus a bidi method ``Missing`` that no server has."""
    info = service_info()
    bidi = info.methods["EchoBidi"]
    missing = MethodInfo(
        "Missing",
        bidi.mode,
        bidi.request_type,
        bidi.response_type,
        serialize_request=bidi.serialize_request,
        deserialize_request=bidi.deserialize_request,
        serialize_response=bidi.serialize_response,
        deserialize_response=bidi.deserialize_response,
    )
    return ServiceInfo(
        info.service_name, [*info.methods.values(), missing], payload_codec=PayloadCodec.THRIFT
    )


# -------------------------------------------------------------------- Python client -> Go server


@pytest.mark.parametrize("count", [0, 1, 10_000])
async def test_py_client_bidi_counts(binaries: Path, count: int) -> None:
    async with asyncio.timeout(LIMIT), go_server(binaries) as go, connect(go.address) as cli:
        stream = await cli.EchoBidi()

        async def sender() -> None:
            for i in range(count):
                await stream.send(Request(message="x", seq=i))
            await stream.close_send()  # the client half-closes; replies keep coming

        task = asyncio.create_task(sender())
        seqs = [r.seq async for r in stream]
        await task
        assert seqs == list(range(count))


@pytest.mark.parametrize("count", [0, 1, 10_000])
async def test_py_client_server_stream_and_client_stream_counts(binaries: Path, count: int) -> None:
    async with asyncio.timeout(LIMIT), go_server(binaries) as go, connect(go.address) as cli:
        seqs = [r.seq async for r in cli.EchoServer(Request(message="ok", count=count))]
        assert seqs == list(range(count))
        cs = await cli.EchoClient()
        for _ in range(count):
            await cs.send(Request(message="m"))
        reply = await cs.close_and_recv()
        assert reply.seq == count


async def test_py_client_server_ends_before_client_half_closes(binaries: Path) -> None:
    async with asyncio.timeout(LIMIT), go_server(binaries) as go, connect(go.address) as cli:
        stream = await cli.EchoBidi()
        await stream.send(Request(message="stop"))
        with pytest.raises(EOFError):
            await stream.recv()


async def test_py_client_biz_error_and_idl_exception_at_the_end(binaries: Path) -> None:
    async with asyncio.timeout(LIMIT), go_server(binaries) as go, connect(go.address) as cli:
        got = []
        with pytest.raises(BizStatusError) as biz:
            async for r in cli.EchoServer(Request(message="biz:7:bad", count=2)):
                got.append(r.seq)
        assert got == [0, 1]  # every reply before the trailer, then the error (§11.15)
        assert (biz.value.code, biz.value.message, biz.value.extra) == (7, "bad", {"k": "v"})
        got = []
        with pytest.raises(ApplicationError) as exc:
            async for r in cli.EchoServer(Request(message="idl-exception", count=1)):
                got.append(r.seq)
        assert got == [0]
        # An IDL exception cannot travel typed on a stream: type 6, "biz error: <err>" (§11.8).
        assert exc.value.type_id == 6
        assert "biz error: StreamError" in str(exc.value)


async def test_py_client_handler_error_mid_stream(binaries: Path) -> None:
    async with asyncio.timeout(LIMIT), go_server(binaries) as go, connect(go.address) as cli:
        stream = await cli.EchoBidi()
        await stream.send(Request(message="one"))
        assert (await stream.recv()).message == "one"
        await stream.send(Request(message="error:boom"))
        with pytest.raises(ApplicationError) as exc:
            await stream.recv()
        assert exc.value.type_id == 6 and "biz error: boom" in str(exc.value)


async def test_py_client_cancel_reaches_the_go_handler(binaries: Path) -> None:
    async with asyncio.timeout(LIMIT), go_server(binaries) as go, connect(go.address) as cli:
        stream = await cli.EchoBidi()
        await stream.send(Request(message="x"))
        await stream.recv()
        await stream.send(Request(message="block"))
        stream.cancel()
        line = await go.event("CANCELLED EchoBidi")
        assert "code=12007" in line or "canceled" in line.lower(), line
        with pytest.raises(CanceledError):
            await stream.recv()


async def test_py_client_timeout_cancels_the_go_handler(binaries: Path) -> None:
    async with asyncio.timeout(LIMIT), go_server(binaries) as go, connect(go.address) as cli:
        stream = await cli.EchoBidi(callopt.with_rpc_timeout(0.3))
        await stream.send(Request(message="block"))
        with pytest.raises(RPCTimeoutError):
            await stream.recv()
        line = await go.event("CANCELLED")
        assert "12015" in line or "timeout" in line.lower(), line


async def test_py_client_metainfo_reaches_go(binaries: Path) -> None:
    async with asyncio.timeout(LIMIT), go_server(binaries) as go, connect(go.address) as cli:
        with metainfo.with_value("tk", "tv"), metainfo.with_persistent_value("pk", "pv"):
            stream = await cli.EchoBidi()
        await stream.send(Request(message="meta"))
        info = json.loads((await stream.recv()).message)
        assert info["transient"] == {"tk": "tv"}
        assert info["persistent"] == {"pk": "pv"}
        await stream.close_send()


async def test_py_client_unary_methods_over_ttheader(binaries: Path) -> None:
    async with asyncio.timeout(LIMIT), go_server(binaries) as go, connect(go.address) as cli:
        assert (await cli.Echo(Request(message="p"))).message == "p"
        assert (await cli.EchoUnary(Request(message="u"))).message == "u"
        with pytest.raises(StreamError) as exc:
            await cli.Echo(Request(message="idl-exception"))
        assert (exc.value.code, exc.value.message) == (3, "declared")


async def test_py_client_unknown_method_waits_for_its_deadline_with_kitex(binaries: Path) -> None:
    # Kitex only logs an unknown method and sends nothing back (§11.5): the caller's deadline ends it.
    async with (
        asyncio.timeout(LIMIT),
        go_server(binaries) as go,
        connect(go.address, info=with_missing_method()) as cli,
    ):
        stream = await cli.client.bidi_stream("Missing", callopt.with_rpc_timeout(0.5))
        await stream.send(Request(message="x"))
        started = time.monotonic()
        with pytest.raises(RPCTimeoutError):
            await stream.recv()
        assert time.monotonic() - started >= 0.3


# -------------------------------------------------------------------- Go client -> Python server


async def run_go_client(bin_dir: Path, address: str, cases: str | None = None) -> dict[str, dict[str, Any]]:
    args = ["-addr", address] + ([] if cases is None else ["-cases", cases])
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "ttstream-client"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return {line["case"]: line for line in lines}


async def test_go_client_to_python_server(binaries: Path) -> None:
    async with asyncio.timeout(180), serve() as (svr, handler):
        results = await run_go_client(binaries, svr.address)
    ok = {name: r for name, r in results.items() if not r["err"]}
    for name, want in (("bidi-0", 0), ("bidi-1", 1), ("bidi-10000", 10_000)):
        assert ok[name]["received"] == want, results[name]
    for name, want in (("server-0", 0), ("server-1", 1), ("server-10000", 10_000)):
        assert ok[name]["received"] == want, results[name]
    assert (ok["client-3"]["received"], ok["client-3"]["reply"]) == (3, "m0,m1,m2")
    assert ok["client-0"]["received"] == 0 and ok["client-1"]["received"] == 1
    assert results["server-half-close"]["err"] == "EOF"
    biz = results["biz-end"]
    assert biz["biz_code"] == 7 and "bad" in biz["err"], biz
    # The Go client may drop replies that arrived before a biz-error trailer (§11.15): 0 to 2 here.
    assert 0 <= biz["received"] <= 2
    exc = results["idl-exception-end"]
    assert "code=12001" in exc["err"] and "biz error: " in exc["err"], exc
    mid = results["error-mid"]
    assert mid["received"] == 1 and "biz error: boom" in mid["err"], mid
    assert "code=12007" in results["cancel"]["err"], results["cancel"]
    assert handler.cancelled.is_set()
    assert "code=12015" in results["timeout"]["err"], results["timeout"]
    assert "code=12014" in results["recv-timeout"]["err"], results["recv-timeout"]
    meta = json.loads(results["meta"]["reply"])
    assert (meta["transient"], meta["persistent"]) == ({"tk": "tv"}, {"pk": "pv"})
    assert meta["deadline"] is False  # a Kitex client sends no deadline (its ctx has one: 60 s)
    unary = results["unary"]
    assert unary["reply"] == "p" and "StreamError code=3 message=declared" in unary["err"], unary


async def test_go_client_unknown_method_gets_an_answer_from_python(binaries: Path) -> None:
    # Beyond Kitex: a Python server answers a stream for an unknown method with a Trailer exception,
    # so the Go caller fails at once with 12001 instead of waiting for its 5 s deadline.
    info = service_info()
    without = ServiceInfo(
        info.service_name,
        [m for m in info.methods.values() if m.name != "EchoBidi"],
        payload_codec=PayloadCodec.THRIFT,
    )
    import kitex_grpc
    from kitex_grpc import TransportProtocol, server

    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(TransportProtocol.TTHEADER_STREAMING),
    )
    svr.register_service(without, object())
    await svr.start()
    try:
        results = await run_go_client(binaries, svr.address, "unknown")
    finally:
        await svr.stop()
    r = results["unknown"]
    assert "code=12001" in r["err"] and "unknown method EchoBidi" in r["err"], r
    assert r["ms"] < 2000, r
