"""Bad values from a config source: each is refused with one log line naming the key, the method and
the field, and the value in force stays."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import client, server
from kitex_grpc.config import DictSource
from kitex_grpc.governance import FailurePolicy
from kitex_grpc.governance.circuitbreak import CBConfig
from kitex_grpc.governance.timeouts import Timeouts
from tests.config.helpers import FAILURE_RETRY_ONCE
from tests.support import NOT_ABOUT_DIALING, Req, serve


def retry(**changes: Any) -> dict[str, Any]:
    """FAILURE_RETRY_ONCE with ``changes`` applied at dotted paths."""
    entry = copy.deepcopy(FAILURE_RETRY_ONCE)
    for path, value in changes.items():
        node = entry
        *parents, leaf = path.split("__")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return entry


RETRY_CASES = [
    (
        "max_retry_times above 5",
        retry(failure_policy__stop_policy__max_retry_times=6),
        "failure_policy.stop_policy.max_retry_times",
    ),
    (
        "max_retry_times negative",
        retry(failure_policy__stop_policy__max_retry_times=-1),
        "failure_policy.stop_policy.max_retry_times",
    ),
    (
        "backup max_retry_times above 2",
        {
            "enable": True,
            "type": 1,
            "backup_policy": {"retry_delay_ms": 10, "stop_policy": {"max_retry_times": 3}},
        },
        "backup_policy.stop_policy.max_retry_times",
    ),
    (
        "error_rate above 0.3",
        retry(failure_policy__stop_policy__cb_policy__error_rate=0.5),
        "failure_policy.stop_policy.cb_policy.error_rate",
    ),
    (
        "error_rate 0",
        retry(failure_policy__stop_policy__cb_policy__error_rate=0),
        "failure_policy.stop_policy.cb_policy.error_rate",
    ),
    ("unknown type", retry(type=7), "type"),
    ("mixed type", retry(type=2), "type"),
    ("failure type without failure_policy", {"enable": True, "type": 0}, "failure_policy"),
    (
        "backup without retry_delay_ms",
        {"enable": True, "type": 1, "backup_policy": {"stop_policy": {}}},
        "backup_policy.retry_delay_ms",
    ),
    (
        "fixed backoff without fix_ms",
        retry(failure_policy__backoff_policy={"backoff_type": "fixed", "cfg_items": {}}),
        "failure_policy.backoff_policy.cfg_items.fix_ms",
    ),
    (
        "random backoff without max_ms",
        retry(failure_policy__backoff_policy={"backoff_type": "random", "cfg_items": {"min_ms": 5}}),
        "failure_policy.backoff_policy.cfg_items",
    ),
    (
        "unknown backoff type",
        retry(failure_policy__backoff_policy={"backoff_type": "exp"}),
        "failure_policy.backoff_policy.backoff_type",
    ),
    (
        "max_duration_ms negative",
        retry(failure_policy__stop_policy__max_duration_ms=-5),
        "failure_policy.stop_policy.max_duration_ms",
    ),
]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("kitex_grpc.config") and r.levelno >= logging.WARNING
    ]


def new_client(source: DictSource) -> Any:
    return echo_kitex.new_client(
        "echo",
        client.with_host_ports("127.0.0.1:1"),
        client.with_client_basic_info("caller"),
        client.with_config_source(source),
    )


@pytest.mark.parametrize(("case", "bad", "field"), RETRY_CASES, ids=[c[0] for c in RETRY_CASES])
async def test_a_bad_retry_entry_is_refused_and_the_previous_policy_stays(
    case: str, bad: dict[str, Any], field: str, caplog: pytest.LogCaptureFixture
) -> None:
    source = DictSource({"retry": {"Unary": FAILURE_RETRY_ONCE, "Other": FAILURE_RETRY_ONCE}})
    async with new_client(source) as cli:
        await cli.client.config_ready()
        retry_container = cli.client.retry
        before = retry_container.method_policies["Unary"]
        assert isinstance(before, FailurePolicy) and before.stop_policy.max_retry_times == 1
        with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
            source.set("retry", {"Unary": bad, "Other": FAILURE_RETRY_ONCE})
            source.set("retry", {"Unary": bad, "Other": FAILURE_RETRY_ONCE})  # the same again: no new line
        assert retry_container.method_policies["Unary"] is before
        lines = warnings(caplog)
        assert len(lines) == 1, lines
        assert "dict['retry']" in lines[0] and "'Unary'" in lines[0] and f"'{field}'" in lines[0]


async def test_a_negative_timeout_is_refused_and_the_previous_one_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = DictSource({"rpc_timeout": {"Unary": {"rpc_timeout_ms": 100}}})
    async with new_client(source) as cli:
        await cli.client.config_ready()
        with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
            source.set("rpc_timeout", {"Unary": {"rpc_timeout_ms": -1}, "*": {"rpc_timeout_ms": 300}})
        assert cli.client.live.timeouts.lookup("Unary") == Timeouts(0.1)
        assert cli.client.live.timeouts.lookup("Bidi") == Timeouts(0.3)  # the good entry applied
        assert cli.client._unary_configs["Unary"].rpc_timeout == 0.1
        (line,) = warnings(caplog)
        assert "'Unary'" in line and "'rpc_timeout_ms'" in line


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"enable": True, "err_rate": 1.5, "min_sample": 10}, "err_rate"),
        ({"enable": True, "err_rate": 0.5, "min_sample": 0}, "min_sample"),
    ],
)
async def test_a_bad_circuit_breaker_entry_is_refused(
    bad: dict[str, Any], field: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"enable": True, "err_rate": 0.4, "min_sample": 10}
    source = DictSource({"circuit_break": {"Unary": good}})
    async with new_client(source) as cli:
        await cli.client.config_ready()
        cb = cli.client.circuit_breaker
        with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
            source.set("circuit_break", {"Unary": bad})
        assert cb.method_config("Unary") == CBConfig(True, 0.4, 10)
        (line,) = warnings(caplog)
        assert "'Unary'" in line and f"'{field}'" in line


async def test_a_bad_degradation_percentage_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    source = DictSource({"degradation": {"enable": True, "percentage": 10}})
    async with new_client(source) as cli:
        await cli.client.config_ready()
        with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
            source.set("degradation", {"enable": True, "percentage": 101})
        assert cli.client.degradation.config.percentage == 10
        (line,) = warnings(caplog)
        assert "'percentage'" in line


async def test_a_value_of_the_wrong_shape_keeps_everything(caplog: pytest.LogCaptureFixture) -> None:
    source = DictSource({"retry": {"Unary": FAILURE_RETRY_ONCE}})
    async with new_client(source) as cli:
        await cli.client.config_ready()
        with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
            source.set("retry", ["not", "a", "map"])
        assert "Unary" in cli.client.retry.method_policies
        assert len(warnings(caplog)) == 1


async def test_a_negative_server_limit_is_refused_per_field(caplog: pytest.LogCaptureFixture) -> None:
    source = DictSource({"limit": {"connection_limit": 5, "qps_limit": 100}})
    async with serve(server.with_server_basic_info("echo"), server.with_config_source(source)) as (svr, _):
        assert svr.limiter is not None
        with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
            source.set("limit", {"connection_limit": -1, "qps_limit": 7})
        assert (svr.limiter.option.max_connections, svr.limiter.option.max_qps) == (5, 7)
        (line,) = warnings(caplog)
        assert "dict['limit']" in line and "'connection_limit'" in line
        async with echo_kitex.new_client(
            "echo", client.with_host_ports(svr.address), NOT_ABOUT_DIALING
        ) as cli:
            assert (await cli.Unary(Req(message="ok"))).message == "ok"
