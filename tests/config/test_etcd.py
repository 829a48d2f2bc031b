"""Live config from a real etcd in config-etcd's key layout: behaviour after each write."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import client, server
from kitex_grpc.config import ConfigKey
from kitex_grpc.config.etcd import EtcdConfigSource
from kitex_grpc.discovery.etcd import EtcdClient
from kitex_grpc.errors import KitexError, RPCTimeoutError, ServiceCircuitBreakError
from tests.config.helpers import FAILURE_RETRY_ONCE, Flaky, until
from tests.config.proxy import Relay
from tests.config.test_live_dict import HangUnlessRetried
from tests.support import NOT_ABOUT_DIALING, Req, serve

PREFIX = "/KitexConfig/caller/echo"


def test_keys_follow_config_etcd_templates() -> None:
    source = EtcdConfigSource(["127.0.0.1:1"])
    assert source.full_key(ConfigKey("client", "retry", "caller", "echo")) == "/KitexConfig/caller/echo/retry"
    assert source.full_key(ConfigKey("server", "limit", "", "echo")) == "/KitexConfig/echo/limit"
    custom = EtcdConfigSource(
        ["127.0.0.1:1"],
        prefix="/cfg",
        client_path_format="{{ .ServerServiceName }}/from/{{.ClientServiceName}}/{{.Category}}",
        server_path_format="svc-{{.ServerServiceName}}-{{.Category}}",
    )
    assert custom.full_key(ConfigKey("client", "rpc_timeout", "a", "b")) == "/cfg/b/from/a/rpc_timeout"
    assert custom.full_key(ConfigKey("server", "limit", "", "b")) == "/cfg/svc-b-limit"
    with pytest.raises(ValueError, match="unknown field 'Cluster'"):
        EtcdConfigSource(["127.0.0.1:1"], prefix="/{{.Cluster}}")


def caller(address: str, source: EtcdConfigSource, *opts: client.ClientOption) -> Any:
    return echo_kitex.new_client(
        "echo",
        client.with_host_ports(address),
        client.with_client_basic_info("caller"),
        NOT_ABOUT_DIALING,
        client.with_config_source(source),
        *opts,
    )


async def times_out(cli: Any, message: str) -> bool:
    try:
        await cli.Unary(Req(message=message))
    except RPCTimeoutError:
        return True
    return False


async def answers(cli: Any, message: str) -> bool:
    try:
        return bool((await cli.Unary(Req(message=message))).message == message)
    except RPCTimeoutError:
        return False


async def test_retry_and_timeout_written_to_etcd_change_behaviour(
    etcd: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin = EtcdClient([etcd])
    source = EtcdConfigSource([etcd])
    await admin.put(f"{PREFIX}/rpc_timeout", json.dumps({"*": {"rpc_timeout_ms": 200}}))
    try:
        async with serve(handler=HangUnlessRetried()) as (svr, svc), caller(svr.address, source) as cli:
            assert await cli.client.config_ready()  # the key existed before: in force from the start
            assert await times_out(cli, "a")
            assert svc.calls == 1
            await admin.put(f"{PREFIX}/retry", json.dumps({"Unary": FAILURE_RETRY_ONCE}))
            await until(lambda: answers(cli, "b"))
            assert "retry[Unary] = FailurePolicy(" in cli.client.describe()
            assert "[etcd]" in cli.client.describe()
            # bad JSON: logged once, the policy in force stays
            with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
                await admin.put(f"{PREFIX}/retry", "{not json")
                await admin.put(f"{PREFIX}/retry", "{not json")

                async def logged() -> bool:
                    return any("not JSON" in r.getMessage() for r in caplog.records)

                await until(logged)
                assert await answers(cli, "c")
            assert sum("not JSON" in r.getMessage() for r in caplog.records) == 1
            await admin.delete(f"{PREFIX}/retry")  # DELETE: back to defaults (no retry)
            await until(lambda: times_out(cli, "d"))
            await admin.delete(f"{PREFIX}/rpc_timeout")  # Go's default: 1 s
            async with serve(handler=Flaky()) as (slow_svr, _), caller(slow_svr.address, source) as slow:
                await slow.client.config_ready()
                assert await answers(slow, "slow:300")
                assert await times_out(slow, "slow:1200")
    finally:
        await source.close()
        await admin.close()


async def test_a_circuit_breaker_written_to_etcd_opens(etcd: str) -> None:
    admin = EtcdClient([etcd])
    source = EtcdConfigSource([etcd])
    try:
        async with serve() as (svr, svc), caller(svr.address, source) as cli:
            await cli.client.config_ready()
            await admin.put(
                f"{PREFIX}/circuit_break",
                json.dumps({"Unary": {"enable": True, "err_rate": 0.5, "min_sample": 3}}),
            )

            async def opened() -> bool:
                try:
                    await cli.Unary(Req(message="error:x"))
                except ServiceCircuitBreakError:
                    return True
                except KitexError:
                    return False
                return False

            await until(opened)
            reached = svc.calls
            with pytest.raises(ServiceCircuitBreakError):
                await cli.Unary(Req(message="hi"))
            assert svc.calls == reached
    finally:
        await source.close()
        await admin.close()


async def test_a_server_qps_limit_written_to_etcd_refuses_the_excess(etcd: str) -> None:
    admin = EtcdClient([etcd])
    source = EtcdConfigSource([etcd])
    opts = (server.with_server_basic_info("echo"), server.with_config_source(source))
    try:
        async with (
            serve(*opts) as (svr, _),
            echo_kitex.new_client("echo", client.with_host_ports(svr.address), NOT_ABOUT_DIALING) as cli,
        ):
            results = await asyncio.gather(
                *(cli.Unary(Req(message="x")) for _ in range(10)), return_exceptions=True
            )
            assert not [r for r in results if isinstance(r, BaseException)]
            await admin.put("/KitexConfig/echo/limit", json.dumps({"qps_limit": 1}))

            async def refused() -> bool:
                burst = await asyncio.gather(
                    *(cli.Unary(Req(message="x")) for _ in range(10)), return_exceptions=True
                )
                return sum(isinstance(r, KitexError) for r in burst) >= 8

            await until(refused)
            await admin.delete("/KitexConfig/echo/limit")

            async def unlimited() -> bool:
                burst = await asyncio.gather(
                    *(cli.Unary(Req(message="x")) for _ in range(10)), return_exceptions=True
                )
                return not any(isinstance(r, BaseException) for r in burst)

            await until(unlimited)
    finally:
        await source.close()
        await admin.close()


async def test_etcd_away_keeps_the_config_and_a_compacted_watch_rereads(etcd: str) -> None:
    admin = EtcdClient([etcd])
    relay = Relay(etcd)
    await relay.start()
    source = EtcdConfigSource([relay.address], max_backoff=0.5)
    try:
        async with serve(handler=Flaky()) as (svr, _), caller(svr.address, source) as cli:
            await cli.client.config_ready()
            await admin.put(f"{PREFIX}/rpc_timeout", json.dumps({"*": {"rpc_timeout_ms": 100}}))
            await until(lambda: times_out(cli, "slow:300"))
            relay.cut()  # etcd is gone for this client
            for timeout in (150, 5000):  # two changes while away, then their history compacted
                await admin.put(f"{PREFIX}/rpc_timeout", json.dumps({"*": {"rpc_timeout_ms": timeout}}))
            _, revision = await admin.get_with_revision(f"{PREFIX}/rpc_timeout")
            await admin.compact(revision)
            assert await times_out(cli, "slow:300")  # the config in force stays
            relay.restore()
            await until(lambda: answers(cli, "slow:300"), seconds=20)
            assert source.reconnects >= 1
            assert source.rereads >= 1  # resumed from a compacted revision: the key was read again
    finally:
        await source.close()
        await relay.close()
        await admin.close()
