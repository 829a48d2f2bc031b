"""Live governance from a DictSource and the update API, observed as behaviour on real servers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import TransportProtocol, callopt, client, server
from kitex_grpc.config import DictSource
from kitex_grpc.errors import ACLError, KitexError, RPCTimeoutError, ServiceCircuitBreakError
from kitex_grpc.governance import FailurePolicy, StopPolicy, is_retry_request
from kitex_grpc.governance.circuitbreak import CBConfig
from kitex_grpc.governance.timeouts import Timeouts
from tests.config.helpers import FAILURE_RETRY_ONCE, Flaky
from tests.support import NOT_ABOUT_DIALING, EchoService, Reply, Req, serve


class HangUnlessRetried(EchoService):
    """The first attempt of every call hangs; a retried attempt (RetryReq metainfo) answers."""

    async def Unary(self, request: Req) -> Any:
        self.calls += 1
        if not is_retry_request():
            await asyncio.Event().wait()
        return await super()._behave(request)


def new_client(address: str, *opts: client.ClientOption) -> Any:
    return echo_kitex.new_client(
        "echo",
        client.with_host_ports(address),
        client.with_client_basic_info("caller"),
        NOT_ABOUT_DIALING,
        *opts,
    )


async def test_a_retry_policy_that_arrives_turns_a_hang_into_an_answer() -> None:
    source = DictSource()
    async with (
        serve(handler=HangUnlessRetried()) as (svr, svc),
        new_client(svr.address, client.with_rpc_timeout(0.2), client.with_config_source(source)) as cli,
    ):
        assert await cli.client.config_ready()
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="a"))
        assert svc.calls == 1
        source.set("retry", {"Unary": FAILURE_RETRY_ONCE})
        assert (await cli.Unary(Req(message="b"))).message == "b"
        assert svc.calls == 3  # the hang, then the retry that answered
        source.delete("retry")  # back to defaults: no retry
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="c"))
        assert svc.calls == 4
        assert "retry[Unary]" not in cli.client.describe()


async def test_a_new_rpc_timeout_times_out_a_slow_handler_and_delete_restores() -> None:
    source = DictSource()
    async with (
        serve(handler=Flaky()) as (svr, _),
        new_client(svr.address, client.with_config_source(source)) as cli,
    ):
        await cli.client.config_ready()
        assert (await cli.Unary(Req(message="slow:300"))).message == "slow:300"
        source.set("rpc_timeout", {"Unary": {"rpc_timeout_ms": 100, "conn_timeout_ms": 1000}})
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="slow:300"))
        assert "rpc_timeout[Unary] = Timeouts(rpc_timeout=0.1, connect_timeout=1.0)  [dict]" in (
            cli.client.describe()
        )
        source.set("rpc_timeout", {"*": {"rpc_timeout_ms": 100}})  # Unary gone, the wildcard applies
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="slow:300"))
        source.delete("rpc_timeout")
        assert (await cli.Unary(Req(message="slow:300"))).message == "slow:300"


async def test_go_defaults_apply_config_etcds_1s_timeout_without_any_key() -> None:
    async with serve(handler=Flaky()) as (svr, _):
        async with new_client(svr.address, client.with_config_source(DictSource(go_defaults=True))) as cli:
            await cli.client.config_ready()
            assert "rpc_timeout[default] = Timeouts(rpc_timeout=1.0, connect_timeout=0.05)  [go-default]" in (
                cli.client.describe()
            )
            assert (
                "circuit_break[default] = CBConfig(enable=True, err_rate=0.5, min_sample=200)  [go-default]"
                in (cli.client.describe())
            )
            with pytest.raises(RPCTimeoutError):
                await cli.Unary(Req(message="slow:1300"))
        # go_defaults=False on the same source: no implicit timeout
        off = client.with_config_source(DictSource(go_defaults=True), go_defaults=False)
        async with new_client(svr.address, off) as cli:
            await cli.client.config_ready()
            assert (await cli.Unary(Req(message="slow:1100"))).message == "slow:1100"


async def test_code_set_timeout_and_retry_win_over_the_source(caplog: pytest.LogCaptureFixture) -> None:
    source = DictSource(
        {"rpc_timeout": {"*": {"rpc_timeout_ms": 50}}, "retry": {"Unary": FAILURE_RETRY_ONCE}}
    )
    async with serve(handler=HangUnlessRetried()) as (svr, svc), serve(handler=Flaky()) as (slow_svr, _):
        no_retry = client.with_failure_retry(FailurePolicy(StopPolicy(max_retry_times=0)))
        with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
            cli = new_client(
                svr.address, client.with_rpc_timeout(0.2), no_retry, client.with_config_source(source)
            )
            async with cli:
                await cli.client.config_ready()
                with pytest.raises(RPCTimeoutError):  # the code's policy (no retry) stays
                    await cli.Unary(Req(message="x"))
                assert svc.calls == 1
        ignored = [r for r in caplog.records if "set in code" in r.getMessage()]
        assert len(ignored) == 1
        # with_rpc_timeout(2) locks the RPC timeout: the source's 50 ms does not apply
        async with new_client(
            slow_svr.address, client.with_rpc_timeout(2), client.with_config_source(source)
        ) as cli:
            await cli.client.config_ready()
            assert (await cli.Unary(Req(message="slow:200"))).message == "slow:200"


async def test_a_circuit_breaker_opens_after_the_configured_errors() -> None:
    source = DictSource()
    async with serve() as (svr, svc), new_client(svr.address, client.with_config_source(source)) as cli:
        await cli.client.config_ready()
        for _ in range(6):  # without a key (and without Go's defaults) no breaker trips
            with pytest.raises(KitexError):
                await cli.Unary(Req(message="error:x"))
        assert svc.calls == 6
        source.set("circuit_break", {"Unary": {"enable": True, "err_rate": 0.5, "min_sample": 4}})
        for _ in range(4):
            with pytest.raises(KitexError):
                await cli.Unary(Req(message="error:x"))
        assert svc.calls == 10
        with pytest.raises(ServiceCircuitBreakError):
            await cli.Unary(Req(message="hi"))
        assert svc.calls == 10  # refused before the server


async def test_degradation_rejects_its_percentage() -> None:
    source = DictSource({"degradation": {"enable": True, "percentage": 100}})
    async with serve() as (svr, svc), new_client(svr.address, client.with_config_source(source)) as cli:
        await cli.client.config_ready()
        with pytest.raises(ACLError, match="rejected by client degradation config"):
            await cli.Unary(Req(message="x"))
        source.set("degradation", {"enable": True, "percentage": 0})
        assert (await cli.Unary(Req(message="y"))).message == "y"
        source.set("degradation", {"enable": True, "percentage": 100})
        source.delete("degradation")
        assert (await cli.Unary(Req(message="z"))).message == "z"
        assert svc.calls == 2


async def test_a_server_qps_limit_refuses_the_excess_and_delete_lifts_it() -> None:
    source = DictSource()
    opts = (server.with_server_basic_info("echo"), server.with_config_source(source))
    async with serve(*opts) as (svr, svc), new_client(svr.address) as cli:
        for i in range(5):
            await cli.Unary(Req(message=str(i)))
        source.set("limit", {"qps_limit": 1})
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(cli.Unary(Req(message=str(i))) for i in range(10)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        refused = [o for o in outcomes if isinstance(o, KitexError)]
        assert len(refused) + sum(isinstance(o, Reply) for o in outcomes) == 10
        # a bucket of 1, refilled by 1 at each 100 ms boundary the burst crosses
        assert 10 - (2 + int(elapsed / 0.1)) <= len(refused) <= 9
        assert svr.limiter is not None and svr.limiter.stats.qps_rejected == len(refused)
        assert (
            "limit = LimitOption(max_connections=0, max_qps=1, max_concurrency=0)  [dict]" in svr.describe()
        )
        source.delete("limit")
        await asyncio.gather(*(cli.Unary(Req(message=str(i))) for i in range(6)))
        assert svc.calls == 5 + 10 - len(refused) + 6


async def test_an_update_never_tears_a_call_in_flight() -> None:
    svc = Flaky()
    async with serve(handler=svc) as (svr, _), new_client(svr.address, client.with_live_config()) as cli:
        in_flight = asyncio.ensure_future(cli.Unary(Req(message="slow:300")))
        await svc.arrived(1)
        live = cli.client.live
        live.set_timeouts("*", Timeouts(0.05))
        live.set_retry_policy("Unary", FailurePolicy(StopPolicy(max_retry_times=2)))
        live.set_circuit_breaker("Unary", CBConfig(err_rate=0.5, min_sample=100))
        assert (await in_flight).message == "slow:300"  # its deadline was fixed when it started
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="slow:300"))
        assert (
            "rpc_timeout[*] = Timeouts(rpc_timeout=0.05, connect_timeout=None)  [code]"
            in cli.client.describe()
        )


async def test_updates_under_load_keep_every_call_whole() -> None:
    """Calls run while the timeout table and the retry policy are replaced 40 times: each call
    succeeds or times out cleanly, none fails any other way."""
    svc = Flaky()
    async with serve(handler=svc) as (svr, _), new_client(svr.address, client.with_live_config()) as cli:
        live = cli.client.live
        stop = asyncio.Event()

        async def flip() -> None:
            for i in range(40):  # a change every 20 ms for 0.8 s
                live.set_timeouts("Unary", Timeouts(0.5 if i % 2 else 0.001))
                live.set_retry_policy("Unary", FailurePolicy(StopPolicy(max_retry_times=i % 3)))
                await asyncio.sleep(0.02)
            stop.set()

        async def load() -> tuple[int, int]:
            ok = timeouts = 0
            while not stop.is_set():
                try:
                    await cli.Unary(Req(message="slow:5"))
                    ok += 1
                except RPCTimeoutError:
                    timeouts += 1
            return ok, timeouts

        results = await asyncio.gather(flip(), *(load() for _ in range(8)))
        counts = results[1:]
        assert sum(ok for ok, _ in counts) > 0
        assert sum(t for _, t in counts) > 0


async def test_a_connection_limit_from_the_source_refuses_new_connections_only() -> None:
    source = DictSource()
    h2 = TransportProtocol.GRPC_H2
    opts = (
        server.with_server_basic_info("echo"),
        server.with_config_source(source),
        server.with_transport_protocol(h2),
    )
    async with serve(*opts) as (svr, _):
        first = echo_kitex.new_client(
            "echo", client.with_host_ports(svr.address), client.with_transport_protocol(h2), NOT_ABOUT_DIALING
        )
        async with first:
            assert (await first.Unary(Req(message="a"))).message == "a"
            source.set("limit", {"connection_limit": 1})
            second = echo_kitex.new_client(
                "echo",
                client.with_host_ports(svr.address),
                client.with_transport_protocol(h2),
                NOT_ABOUT_DIALING,
            )
            async with second:
                with pytest.raises(KitexError):
                    await second.Unary(Req(message="b"))
            assert (await first.Unary(Req(message="c"))).message == "c"  # the open connection stays
            assert svr.limiter is not None and svr.limiter.stats.conn_rejected >= 1
            source.delete("limit")
            third = echo_kitex.new_client(
                "echo",
                client.with_host_ports(svr.address),
                client.with_transport_protocol(h2),
                NOT_ABOUT_DIALING,
            )
            async with third:
                assert (await third.Unary(Req(message="d"))).message == "d"


async def test_a_timeout_provider_sets_each_calls_timeout_unless_code_or_callopt_did() -> None:
    seen: list[str] = []

    def provider(ri: Any) -> Timeouts | None:
        seen.append(ri.method.name)
        return Timeouts(0.1) if ri.callee.tags.get("tight") == "1" else None

    async with serve(handler=Flaky()) as (svr, _):
        async with new_client(svr.address, client.with_timeout_provider(provider)) as cli:
            assert (await cli.Unary(Req(message="slow:200"))).message == "slow:200"
            with pytest.raises(RPCTimeoutError):
                await cli.Unary(Req(message="slow:200"), callopt.with_tag("tight", "1"))
            # a call option wins over the provider
            reply = await cli.Unary(
                Req(message="slow:200"), callopt.with_tag("tight", "1"), callopt.with_rpc_timeout(2)
            )
            assert reply.message == "slow:200"
            assert seen == ["Unary"] * 3
        # with_rpc_timeout in code locks the RPC timeout: the provider's 0.1 s does not apply
        locked = (
            client.with_timeout_provider(provider),
            client.with_rpc_timeout(2),
            client.with_tag("tight", "1"),
        )
        async with new_client(svr.address, *locked) as cli:
            assert (await cli.Unary(Req(message="slow:200"))).message == "slow:200"


async def test_two_sources_merge_per_method_and_the_later_one_wins() -> None:
    file_like, etcd_like = DictSource({"rpc_timeout": {"*": {"rpc_timeout_ms": 100}}}), DictSource()
    opts = (client.with_config_source(file_like), client.with_config_source(etcd_like))
    async with serve(handler=Flaky()) as (svr, _), new_client(svr.address, *opts) as cli:
        await cli.client.config_ready()  # the second source's absent key leaves the first one's value
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="slow:300"))
        etcd_like.set("rpc_timeout", {"Unary": {"rpc_timeout_ms": 3000}})
        assert (await cli.Unary(Req(message="slow:300"))).message == "slow:300"
        file_like.set("rpc_timeout", {"Unary": {"rpc_timeout_ms": 50}})  # the later source still wins
        assert (await cli.Unary(Req(message="slow:300"))).message == "slow:300"
        etcd_like.delete("rpc_timeout")  # back to what the first source says
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="slow:300"))
        assert "rpc_timeout[Unary] = Timeouts(rpc_timeout=0.05, connect_timeout=None)  [dict]" in (
            cli.client.describe()
        )
