"""kitex-grpc imports and serves (health, reflection, access log, tracers) without OpenTelemetry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys

    class NoOtel:
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError("opentelemetry is not installed (blocked)")
            return None

    sys.meta_path.insert(0, NoOtel())

    import kitex_grpc
    from kitex_grpc import client, server, observability
    from kitex_grpc.health import HealthServer
    from gen.echo.v1 import echo_kitex, echo_pb2
    from tests.support import EchoService

    async def main():
        svr = echo_kitex.new_server(
            EchoService(), server.with_service_addr("127.0.0.1:0"), server.with_health(),
            server.with_reflection(), server.with_access_log(),
        )
        await svr.start()
        async with echo_kitex.new_client("echo", client.with_host_ports(svr.address)) as cli:
            assert (await cli.Unary(echo_pb2.EchoRequest(message="hi"))).message == "hi"
        observability.record_rejection("qps_limit")
        await svr.stop()
        assert not any(m.startswith("opentelemetry") for m in sys.modules)
        print("OK")

    asyncio.run(main())
    """
)


def test_runs_without_opentelemetry() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"
