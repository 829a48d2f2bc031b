"""Live config from a watched file: reload on change, debounce, bad documents kept out."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import client
from kitex_grpc.config import ConfigKey
from kitex_grpc.config.file import FileSource
from kitex_grpc.errors import RPCTimeoutError
from tests.config.helpers import Flaky, until
from tests.support import NOT_ABOUT_DIALING, Req, serve


def timeouts(ms: int) -> str:
    return json.dumps({"rpc_timeout": {"*": {"rpc_timeout_ms": ms}}})


async def test_a_changed_file_is_applied_and_a_bad_one_is_kept_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "governance.json"
    path.write_text(timeouts(100))
    source = FileSource(path, interval=0.02)
    async with (
        serve(handler=Flaky()) as (svr, _),
        echo_kitex.new_client(
            "echo", client.with_host_ports(svr.address), NOT_ABOUT_DIALING, client.with_config_source(source)
        ) as cli,
    ):
        assert await cli.client.config_ready()
        with pytest.raises(RPCTimeoutError):
            await cli.Unary(Req(message="slow:300"))
        assert (
            "rpc_timeout[*] = Timeouts(rpc_timeout=0.1, connect_timeout=None)  [file]"
            in cli.client.describe()
        )

        async def answers() -> bool:
            try:
                return bool((await cli.Unary(Req(message="slow:300"))).message)
            except RPCTimeoutError:
                return False

        path.write_text(timeouts(3000))
        await until(answers)
        reloads = source.reloads
        with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
            path.write_text('{"rpc_timeout": ')

            async def logged() -> bool:
                return any("not loaded" in r.getMessage() for r in caplog.records)

            await until(logged)
        assert source.reloads == reloads
        assert await answers()  # the last good document stays in force
        path.unlink()  # a missing file: logged, kept
        path.write_text(json.dumps({}))  # no category: back to defaults (no timeout)

        async def reloaded() -> bool:
            return source.reloads > reloads

        await until(reloaded)
        assert await answers()


async def test_writes_within_the_debounce_are_read_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "governance.json"
    path.write_text(timeouts(100))
    source = FileSource(path, interval=0.01, debounce=0.3)
    applied: list[Any] = []
    task = asyncio.ensure_future(source.watch(ConfigKey("client", "rpc_timeout", "c", "s"), applied.append))
    try:
        await until(lambda: _true(applied))
        with caplog.at_level(logging.WARNING, "kitex_grpc.config"):
            text = timeouts(250)
            path.write_text(text[:10])  # an editor's first, partial write

            async def settling() -> bool:
                return source.settling

            await until(settling)
            path.write_text(text)  # completed within the debounce

            async def second() -> bool:
                return len(applied) == 2

            await until(second)
        assert applied == [{"*": {"rpc_timeout_ms": 100}}, {"*": {"rpc_timeout_ms": 250}}]
        assert source.reloads == 2  # the first read and one reload: the partial file was never parsed
        assert not [r for r in caplog.records if "not loaded" in r.getMessage()]
    finally:
        task.cancel()


async def _true(items: list[Any]) -> bool:
    return bool(items)


def test_yaml_needs_pyyaml(tmp_path: Path) -> None:
    path = tmp_path / "governance.yaml"
    path.write_text("rpc_timeout:\n  '*': {rpc_timeout_ms: 100}\n")
    try:
        import yaml  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="PyYAML is not installed"):
            FileSource(path)
        return
    source = FileSource(path)
    assert source._load(source._read_stamp())
    assert source._current == {"rpc_timeout": {"*": {"rpc_timeout_ms": 100}}}
