"""discovery.grpc_caller: the small gRPC caller the etcd client runs on, against a real Echo server.

It stands in for a ``kitex_grpc.new_client`` with host ports and timeouts (a discovery module may not
import the client layer), so these tests pin what such a client does: the same transport defaults,
re-pick after a failed connect, the RPC timeout, streams, and closing.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from gen.echo.v1.echo_kitex import ECHO_SERVICE_INFO
from kitex_grpc.discovery.grpc_caller import CallerSettings, GrpcCaller
from kitex_grpc.errors import GetConnectionError, InternalError, RPCTimeoutError
from kitex_grpc.options.client import ClientOptions
from tests.discovery.helpers import free_port
from tests.support import Req, serve


def caller(*endpoints: str, timeout: float | None = 5.0, connect_timeout: float = 5.0) -> GrpcCaller:
    return GrpcCaller(ECHO_SERVICE_INFO, "echo", endpoints, timeout=timeout, connect_timeout=connect_timeout)


def test_the_settings_are_the_client_defaults() -> None:
    defaults = ClientOptions()
    for field in dataclasses.fields(CallerSettings):
        assert getattr(CallerSettings(), field.name) == getattr(defaults, field.name), field.name


def test_bad_endpoints_and_timeouts_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        caller()
    with pytest.raises(ValueError, match="has no port"):
        caller("127.0.0.1")
    with pytest.raises(ValueError, match="has no host"):
        caller(":2379")
    with pytest.raises(ValueError, match="timeout must be"):
        caller("127.0.0.1:2379", timeout=-1)
    with pytest.raises(ValueError, match="connect_timeout must be > 0"):
        caller("127.0.0.1:2379", connect_timeout=0)


async def test_unary_and_bidi_calls_on_one_connection() -> None:
    async with serve() as (svr, svc):
        cli = caller(svr.address)
        try:
            reply = await cli.call("Unary", Req(message="hi", seq=4))
            assert (reply.message, reply.seq) == ("hi", 4)
            stream = await cli.bidi_stream("Bidi")
            for text in ("a", "b"):
                await stream.send(Req(message=text))
                assert (await stream.recv()).message == text
            stream.cancel()
            assert (await cli.call("Unary", Req(message="again"))).message == "again"
            assert svc.calls == 2
            # one grpcio channel per endpoint, reused by every call (the pool gauge's rows)
            assert [size for _, size in cli._transport.pool_sizes()] == [1]  # type: ignore[attr-defined]
        finally:
            await cli.close()


async def test_a_dead_endpoint_is_skipped_for_a_live_one() -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with serve() as (svr, _):
        cli = caller(dead, svr.address, connect_timeout=1.0)
        try:
            # round robin starts on either; a failed connect re-picks the other, so every call answers
            for i in range(4):
                assert (await cli.call("Unary", Req(message=str(i)))).message == str(i)
        finally:
            await cli.close()


async def test_no_endpoint_reachable_is_a_connection_error() -> None:
    cli = caller(f"127.0.0.1:{free_port()}", connect_timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(GetConnectionError):
            await cli.call("Unary", Req(message="x"))
        assert time.monotonic() - started < 5
        with pytest.raises(GetConnectionError):
            await cli.bidi_stream("Bidi")
    finally:
        await cli.close()


async def test_the_rpc_timeout_bounds_unary_calls_not_streams() -> None:
    async with serve() as (svr, svc):
        cli = caller(svr.address, timeout=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(RPCTimeoutError):
                await cli.call("Unary", Req(message="block"))
            assert 0.25 <= time.monotonic() - started < 5
            stream = await cli.bidi_stream("Bidi")
            assert stream.ri.deadline is None  # a watch or keep-alive stream lives until cancelled
            await stream.send(Req(message="s"))
            assert (await stream.recv()).message == "s"
            stream.cancel()
        finally:
            await cli.close()
        assert svc.entered.is_set()


async def test_calls_after_close_and_to_unknown_methods_fail() -> None:
    async with serve() as (svr, _):
        cli = caller(svr.address)
        await cli.call("Unary", Req(message="x"))
        await cli.close()
        with pytest.raises(InternalError, match="closed"):
            await cli.call("Unary", Req(message="x"))
        other = caller(svr.address)
        try:
            with pytest.raises(InternalError, match="non-existent method"):
                await other.call("Nope", Req())
            with pytest.raises(InternalError, match="is BIDIRECTIONAL"):
                await other.call("Bidi", Req())
        finally:
            await other.close()
