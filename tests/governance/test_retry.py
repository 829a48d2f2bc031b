"""Retry and backup requests on real servers, and the retry budget with an injected clock."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import callopt, client, metainfo
from kitex_grpc.errors import (
    GetConnectionError,
    KitexError,
    RemoteOrNetworkError,
    RetryError,
    RPCTimeoutError,
)
from kitex_grpc.governance import (
    BackOffPolicy,
    BackupPolicy,
    FailurePolicy,
    RetryContainer,
    ShouldResultRetry,
    StopPolicy,
)
from tests.discovery.helpers import processes
from tests.support import EchoService, Req, serve


class Blocking(EchoService):
    """Every call blocks until cancelled (a hung instance)."""

    async def Unary(self, request: Req) -> Any:
        self.calls += 1
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def network_errors(error: BaseException, ri: Any) -> bool:
    return isinstance(error, RemoteOrNetworkError | GetConnectionError)


async def test_timeout_is_retried_on_another_node_by_default() -> None:
    hung, ok = Blocking(), EchoService()
    async with serve(handler=hung) as (a, _), serve(handler=ok) as (b, _):
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(a.address, b.address),
            client.with_rpc_timeout(0.3),
            client.with_failure_retry(),
        )
        async with cli:
            assert cli.client.chain_names[0] == "retry"
            reply = await cli.Unary(Req(message="hi"))
            assert reply.message == "hi"
            assert (hung.calls, ok.calls) == (1, 1)  # the retry avoided the node that failed
            assert cli.client.retry is not None and cli.client.retry.stats.retries == 1
            # a non-timeout error is not retried by default
            with pytest.raises(RemoteOrNetworkError):  # the server's BizError, as a remote error
                await cli.Unary(Req(message="error:x"), callopt.with_host_port(b.address))
            assert ok.calls == 2


async def test_chain_stop_result_retry_and_retry_req_metainfo() -> None:
    async with serve() as (svr, svc):
        policy = FailurePolicy(
            should_result_retry=ShouldResultRetry(resp_retry=lambda reply, ri: ri.attempt == 1)
        )
        cli = echo_kitex.new_client(
            "echo", client.with_host_ports(svr.address), client.with_failure_retry(policy)
        )
        async with cli:
            reply = await cli.Unary(Req(message="meta"))
            # the second attempt told the server it was a retry (Kitex RPC_PERSIST_RetryReq)
            # (over gRPC metadata the key arrives in metainfo's CGI form, as with Go Kitex)
            assert json.loads(reply.message)["persistent"] == {"RETRYREQ": "1"}
            assert svc.calls == 2
            with metainfo.with_persistent_value("RetryReq", "1"):  # serving a retried request
                await cli.Unary(Req(message="meta"))
            assert svc.calls == 3  # chain stop: no retry
            with metainfo.with_persistent_value("RETRYREQ", "1"):  # ... received over gRPC
                await cli.Unary(Req(message="meta"))
            assert svc.calls == 4
            assert cli.client.retry is not None and cli.client.retry.stats.chain_stops == 2


async def test_max_duration_gives_retry_error_and_back_off() -> None:
    hung = Blocking()
    async with serve(handler=hung) as (svr, _):
        policy = FailurePolicy(
            StopPolicy(max_retry_times=5, max_duration=0.25), BackOffPolicy.fixed_delay(0.05)
        )
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(svr.address),
            client.with_rpc_timeout(0.1),
            client.with_failure_retry(policy),
        )
        async with cli:
            start = time.monotonic()
            with pytest.raises(RetryError) as info:
                await cli.Unary(Req())
            assert isinstance(info.value.__cause__, RPCTimeoutError)
            assert hung.calls in (2, 3)
            assert time.monotonic() - start < 1.0


async def test_backup_request_first_success_wins_other_cancelled() -> None:
    hung, ok = Blocking(), EchoService()
    async with serve(handler=hung) as (a, _), serve(handler=ok) as (b, _):
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(a.address, b.address),
            client.with_backup_request(BackupPolicy(0.1)),
        )
        async with cli:
            start = time.monotonic()
            reply = await cli.Unary(Req(message="hedged"))
            elapsed = time.monotonic() - start
            assert reply.message == "hedged" and 0.1 <= elapsed < 1.0
            await asyncio.wait_for(hung.cancelled.wait(), 5)  # the slow attempt was cancelled
            assert cli.client.retry is not None and cli.client.retry.stats.backups == 1


async def test_method_policy_and_per_call_override() -> None:
    hung = Blocking()
    async with serve(handler=hung) as (svr, _):
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(svr.address),
            client.with_rpc_timeout(0.05),
            client.with_failure_retry(FailurePolicy(StopPolicy(max_retry_times=2))),
            client.with_retry_method_policies({"Unary": FailurePolicy(StopPolicy(max_retry_times=0))}),
        )
        async with cli:
            with pytest.raises(RPCTimeoutError):
                await cli.Unary(Req())
            assert hung.calls == 1  # the method's policy (no retry) won over the client's
            with pytest.raises(RPCTimeoutError):
                await cli.Unary(
                    Req(), callopt.with_retry_policy(FailurePolicy(StopPolicy(max_retry_times=1)))
                )
            assert hung.calls == 3
        plain = echo_kitex.new_client(
            "echo", client.with_host_ports(svr.address), client.with_rpc_timeout(0.05)
        )
        async with plain:
            assert "retry" not in plain.client.chain_names
            with pytest.raises(RPCTimeoutError):
                await plain.Unary(
                    Req(), callopt.with_retry_policy(FailurePolicy(StopPolicy(max_retry_times=1)))
                )
            assert hung.calls == 5  # a per-call policy works on a client without retry options


def test_retry_budget_is_a_percentage_limit() -> None:
    now = [0.0]
    container = RetryContainer(FailurePolicy(), clock=lambda: now[0])
    key = "a/b/m"
    stop = StopPolicy()
    window = container._budget(key)
    for _ in range(18):
        window.add(0, now[0])  # first attempts count as successes
    window.add(1, now[0])  # one retry: 1/19 < 10 %
    assert container.stop_reason(stop, key) is None
    window.add(1, now[0])  # two retries: 2/20 = 10 % -> stop
    assert container.stop_reason(stop, key) == "retry circuit break"
    now[0] += 10.5  # the window forgets
    assert container.stop_reason(stop, key) is None
    assert StopPolicy(cb_error_rate=0.9).cb_error_rate == 0.1  # Kitex resets an invalid rate


def test_policies_validate_like_kitex() -> None:
    with pytest.raises(ValueError):
        FailurePolicy(StopPolicy(max_retry_times=6))
    with pytest.raises(ValueError):
        BackupPolicy(0)
    with pytest.raises(ValueError):
        BackupPolicy(0.1, StopPolicy(max_retry_times=3))
    with pytest.raises(ValueError):
        BackOffPolicy.random_delay(0.2, 0.1)


async def test_kill_one_instance_mid_load_with_retry_no_call_fails() -> None:
    async with processes(3) as procs:
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(*(p.address for p in procs)),
            client.with_rpc_timeout(2),
            client.with_failure_retry(
                FailurePolicy(should_result_retry=ShouldResultRetry(error_retry=network_errors))
            ),
        )
        total, concurrency = 600, 12
        done = 0
        failures: list[BaseException] = []
        victim = procs[1]

        async def worker(n: int) -> None:
            nonlocal done
            for i in range(n):
                try:
                    await cli.Unary(Req(message=f"m{i}"))
                except KitexError as exc:
                    failures.append(exc)
                done += 1
                if done == total // 3:
                    victim.kill()  # SIGKILL while the other workers have calls in flight

        async with cli:
            start = time.monotonic()
            await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
            elapsed = time.monotonic() - start
            stats = cli.client.retry.stats if cli.client.retry else None
        assert stats is not None
        print(
            f"kill mid-load: {total} calls, {len(failures)} failed, {stats.retries} retries,"
            f" {elapsed:.2f}s, killed {victim.address} after {total // 3}"
        )
        assert failures == []
        assert victim.proc.returncode is not None
