"""Live governance config: a client keeps calling while its timeout and retry policy change.

File only (no etcd needed)::

    PYTHONPATH=. python examples/live_config/demo.py

With etcd as well (``etcd`` listening on 127.0.0.1:2379, or ``make etcd`` and ``.cache/bin/etcd``)::

    PYTHONPATH=. python examples/live_config/demo.py 127.0.0.1:2379

The server answers slowly (300 ms), and hangs on every first attempt of a call whose message is
``flaky`` (a retried attempt answers). A background task calls both kinds every 50 ms and prints
each outcome change as it happens, while the script rewrites the config: first a JSON file
(``rpc_timeout`` 1000 ms: 'flaky' times out; 100 ms: 'slow' times out too; then 1000 ms and a
failure-retry policy: both answer; then a bad retry entry, refused),
then, with etcd, config-etcd's keys ``/KitexConfig/demo-client/echo/{rpc_timeout,retry}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client, server
from kitex_grpc.config.file import FileSource
from kitex_grpc.errors import KitexError
from kitex_grpc.governance import is_retry_request

logging.basicConfig(level=logging.WARNING, format="    log: %(message)s")

RETRY = {
    "Unary": {
        "enable": True,
        "type": 0,
        "failure_policy": {"stop_policy": {"max_retry_times": 1, "cb_policy": {"error_rate": 0.3}}},
    }
}


class Echo(echo_kitex.EchoHandler):
    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        if request.message == "flaky" and not is_retry_request():
            await asyncio.Event().wait()
        await asyncio.sleep(0.3)
        return echo_pb2.EchoReply(message=request.message)


async def watch_outcomes(cli: echo_kitex.EchoClient, start: float, stop: asyncio.Event) -> None:
    """Call 'slow' and 'flaky' every 50 ms; print when an outcome changes."""
    last: dict[str, str] = {}
    while not stop.is_set():
        for message in ("slow", "flaky"):
            try:
                await cli.Unary(echo_pb2.EchoRequest(message=message))
                outcome = "answered"
            except KitexError as exc:
                outcome = type(exc).__name__
            if last.get(message) != outcome:
                last[message] = outcome
                print(f"  t={time.monotonic() - start:5.2f}s  {message!r}: {outcome}")
        await asyncio.sleep(0.05)


async def step(label: str, start: float) -> None:
    print(f"t={time.monotonic() - start:5.2f}s  {label}")
    await asyncio.sleep(2.0)  # let the caller show a few calls under this config


async def main(etcd: str | None) -> None:
    svr = echo_kitex.new_server(Echo(), server.with_service_addr("127.0.0.1:0"))
    await svr.start()
    path = Path(tempfile.mkdtemp()) / "governance.json"
    path.write_text(json.dumps({"rpc_timeout": {"*": {"rpc_timeout_ms": 1000}}}))
    opts = [
        client.with_host_ports(svr.address),
        client.with_client_basic_info("demo-client"),
        client.with_connect_timeout(1),
        client.with_config_source(FileSource(path)),
    ]
    admin = source = None
    if etcd is not None:
        from kitex_grpc.config.etcd import EtcdConfigSource
        from kitex_grpc.discovery.etcd import EtcdClient

        admin = EtcdClient([etcd])
        source = EtcdConfigSource([etcd], go_defaults=False)
        opts.append(client.with_config_source(source))
        for category in ("rpc_timeout", "retry"):
            await admin.delete(f"/KitexConfig/demo-client/echo/{category}")
    cli = echo_kitex.new_client("echo", *opts)
    start = time.monotonic()
    stop = asyncio.Event()
    async with cli:
        await cli.client.config_ready()
        caller = asyncio.ensure_future(watch_outcomes(cli, start, stop))
        await step("file: rpc_timeout 1000 ms, no retry -> 'slow' answers, 'flaky' times out", start)
        path.write_text(json.dumps({"rpc_timeout": {"*": {"rpc_timeout_ms": 100}}}))
        await step("file: rpc_timeout 100 ms -> 'slow' times out", start)
        path.write_text(json.dumps({"rpc_timeout": {"*": {"rpc_timeout_ms": 1000}}, "retry": RETRY}))
        await step("file: rpc_timeout 1000 ms + failure retry -> both answer", start)
        path.write_text(
            json.dumps(
                {
                    "rpc_timeout": {"*": {"rpc_timeout_ms": 1000}},
                    "retry": {"Unary": {"enable": True, "type": 9}},
                }
            )
        )
        await step("file: a bad retry entry -> refused with one log line, the retry stays", start)
        if admin is not None:
            await admin.put(
                "/KitexConfig/demo-client/echo/rpc_timeout", json.dumps({"Unary": {"rpc_timeout_ms": 150}})
            )
            await step("etcd: rpc_timeout 150 ms for Unary -> 'slow' times out again", start)
            await admin.put(
                "/KitexConfig/demo-client/echo/rpc_timeout", json.dumps({"Unary": {"rpc_timeout_ms": 2000}})
            )
            await step("etcd: rpc_timeout 2000 ms -> 'slow' answers", start)
        stop.set()
        await caller
        lines = cli.client.describe().splitlines()
        first = lines.index("  live config [source]:")
        end = next(i for i in range(first + 1, len(lines)) if not lines[i].startswith("    "))
        print("\nclient.describe(), its live part:\n" + "\n".join(lines[first:end]))
    if source is not None and admin is not None:
        await source.close()
        await admin.close()
    await svr.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
