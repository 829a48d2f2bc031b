"""Server limits (exact rejections, RESOURCE_EXHAUSTED, counted), ACL on both sides, fallback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import callopt, client, server
from kitex_grpc.errors import ACLError, OverLimitError, RPCTimeoutError
from kitex_grpc.governance import TokenBucket, error_fallback, timeout_and_cb_fallback
from kitex_grpc.status import StatusCode
from tests.support import EchoService, Req, serve


def test_token_bucket_exact_with_injected_clock() -> None:
    now = [0.0]
    bucket = TokenBucket(20, lambda: now[0])
    assert sum(bucket.acquire() for _ in range(25)) == 20  # starts full: exactly max_qps pass
    now[0] += 0.1  # one 100 ms interval refills max_qps / 10
    assert sum(bucket.acquire() for _ in range(5)) == 2
    now[0] += 10
    assert sum(bucket.acquire() for _ in range(30)) == 20  # never above capacity


class Gated(EchoService):
    async def Unary(self, request: Req) -> Any:
        self.calls += 1
        async with self._arrivals:
            self._arrivals.notify_all()
        await self.release.wait()
        return Req(message="done")


async def test_concurrency_limit_rejects_exactly_the_excess() -> None:
    handler = Gated()
    rejected: list[str] = []
    opts = (server.with_concurrency_limit(3), server.with_limit_reporter(rejected.append))
    async with serve(*opts, handler=handler) as (svr, _):
        assert svr.chain_names[0] == "limit"
        cli = echo_kitex.new_client("echo", client.with_host_ports(svr.address))
        async with cli:
            held = [asyncio.ensure_future(cli.Unary(Req())) for _ in range(3)]
            await handler.arrived(3)
            for _ in range(4):
                with pytest.raises(OverLimitError) as info:
                    await cli.Unary(Req())
                assert info.value.grpc_status is StatusCode.RESOURCE_EXHAUSTED
            handler.release.set()
            await asyncio.gather(*held)
            await cli.Unary(Req())
        assert svr.limiter is not None
        assert (svr.limiter.stats.accepted, svr.limiter.stats.concurrency_rejected) == (4, 4)
        assert rejected == ["concurrency"] * 4


async def test_max_connections_rejects_the_connection_beyond_the_limit() -> None:
    handler = Gated()
    async with serve(server.with_limit(max_connections=2), handler=handler) as (svr, _):
        # grpcio shares one subchannel (one TCP connection) between channels of a process unless told not to
        own = client.with_grpcio_channel_options([("grpc.use_local_subchannel_pool", 1)])
        clients = [echo_kitex.new_client("echo", client.with_host_ports(svr.address), own) for _ in range(3)]
        held = [asyncio.ensure_future(c.Unary(Req())) for c in clients[:2]]
        await handler.arrived(2)
        with pytest.raises(OverLimitError):
            await clients[2].Unary(Req())
        # a second call on an already counted connection is not a new connection
        extra = asyncio.ensure_future(clients[0].Unary(Req()))
        await handler.arrived(3)
        handler.release.set()
        await asyncio.gather(*held, extra)
        await clients[2].Unary(Req())  # the others are idle now: room again
        for c in clients:
            await c.close()
        assert svr.limiter is not None and svr.limiter.stats.conn_rejected == 1


async def test_max_qps_rejects_what_exceeds_the_bucket() -> None:
    async with serve(server.with_limit(max_qps=10)) as (svr, svc):
        cli = echo_kitex.new_client("echo", client.with_host_ports(svr.address))
        async with cli:
            loop = asyncio.get_running_loop()
            start = loop.time()
            results = await asyncio.gather(*(cli.Unary(Req()) for _ in range(25)), return_exceptions=True)
            intervals = int((loop.time() - start) / 0.1) + 1
        ok = sum(not isinstance(r, BaseException) for r in results)
        assert all(isinstance(r, OverLimitError) for r in results if isinstance(r, BaseException))
        # 10 from the full bucket, plus at most one refill token per 100 ms that passed
        assert 10 <= ok <= 10 + intervals
        assert svr.limiter is not None and svr.limiter.stats.qps_rejected == 25 - ok == 25 - svc.calls


async def test_acl_rules_client_and_server() -> None:
    def deny_secret(ri: Any, request: Any) -> str | None:
        return "secret is forbidden" if request.message == "secret" else None

    async with serve(server.with_acl_rules(deny_secret)) as (svr, svc):
        assert "acl" in svr.chain_names
        plain = echo_kitex.new_client("echo", client.with_host_ports(svr.address))
        guarded = echo_kitex.new_client(
            "echo",
            client.with_host_ports(svr.address),
            client.with_acl_rules(lambda ri, req: ValueError("no")),
        )
        async with plain, guarded:
            with pytest.raises(ACLError):  # server-side rule: PERMISSION_DENIED on the wire
                await plain.Unary(Req(message="secret"))
            assert (await plain.Unary(Req(message="ok"))).message == "ok"
            with pytest.raises(ACLError):  # client-side rule: rejected before discovery
                await guarded.Unary(Req(message="ok"))
            assert guarded.client.chain_names.index("acl") < guarded.client.chain_names.index("discovery")
        assert svc.calls == 1


async def test_fallback_after_all_attempts_and_per_call() -> None:
    class Hung(EchoService):
        async def Unary(self, request: Req) -> Any:
            await asyncio.Event().wait()

    async with serve(handler=Hung()) as (svr, _):
        seen: list[type[BaseException]] = []

        def fb(ri: Any, request: Any, reply: Any, error: BaseException | None) -> Any:
            assert error is not None
            seen.append(type(error))
            return Req(message="fallback")

        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(svr.address),
            client.with_rpc_timeout(0.05),
            client.with_fallback(timeout_and_cb_fallback(fb)),
        )
        async with cli:
            assert "fallback" not in cli.client.chain_names  # it runs after the chain
            assert (await cli.Unary(Req())).message == "fallback"
        assert seen == [RPCTimeoutError]
        plain = echo_kitex.new_client(
            "echo", client.with_host_ports(svr.address), client.with_rpc_timeout(0.05)
        )
        async with plain:
            reply = await plain.Unary(Req(), callopt.with_fallback(error_fallback(fb)))
            assert reply.message == "fallback"
            with pytest.raises(RPCTimeoutError):
                await plain.Unary(Req())


async def test_unconfigured_governance_adds_nothing_and_everything_in_kitex_order() -> None:
    from kitex_grpc.governance import CBSuite, FailurePolicy

    async with serve() as (svr, _):
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(svr.address),
            client.with_failure_retry(FailurePolicy()),
            client.with_circuit_breaker(CBSuite()),
            client.with_acl_rules(lambda ri, req: None),
        )
        async with cli:
            assert cli.client.chain_names == (
                "retry",
                "service_circuit_breaker",
                "rpc_timeout",
                "acl",
                "discovery",
                "instance_circuit_breaker",
                "error_mapping",
                "transport",
            )
            assert (await cli.Unary(Req(message="x"))).message == "x"
        assert svr.chain_names == ("server_timeout", "handler_error", "handler")
