"""``make demo``: run the Echo server and client over every transport this build has.

For each transport the server runs in its own process; the client calls it and prints each call
type's result; then the server gets SIGTERM and drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from kitex_grpc import TransportProtocol  # noqa: E402
from kitex_grpc.options._base import fold  # noqa: E402
from kitex_grpc.options.client import ClientOptions, with_transport_protocol  # noqa: E402
from kitex_grpc.transport import new_client_transport  # noqa: E402

# Thrift-only framings have their own example (examples/thrift_echo); Echo here is protobuf.
PROTOBUF_TRANSPORTS = [TransportProtocol.GRPC, TransportProtocol.GRPC_H2, TransportProtocol.TTHEADER_FRAMED]


def available(protocol: TransportProtocol) -> bool:
    try:
        new_client_transport(fold(ClientOptions, (with_transport_protocol(protocol),), "client"))
    except ValueError:
        return False
    return True


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@contextlib.asynccontextmanager
async def serving(script: Path, *args: str) -> AsyncIterator[str | None]:
    """Run an example server; yield its address (None if it did not start); SIGTERM it afterwards."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(script), "--addr", "127.0.0.1:0", *args, stdout=subprocess.PIPE, env=ENV
    )
    assert server.stdout is not None
    try:
        line = await asyncio.wait_for(server.stdout.readline(), 30)
        yield line.split()[1].decode() if line.startswith(b"LISTENING ") else None
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), 15)
        except TimeoutError:
            server.kill()
            await server.wait()


async def run_client(script: Path, *args: str) -> bool:
    client = await asyncio.create_subprocess_exec(sys.executable, str(script), *args, env=ENV)
    return await asyncio.wait_for(client.wait(), 60) == 0


async def run_one(protocol: TransportProtocol) -> bool:
    name = protocol.value
    async with serving(HERE / "server.py", "--transport", name) as addr:
        if addr is None:
            print(f"{protocol.name}: server failed to start", flush=True)
            return False
        print(f"{protocol.name} (server {addr}):", flush=True)
        return await run_client(HERE / "client.py", "--addr", addr, "--transport", name)


async def run_thrift() -> bool:
    """examples/thrift_echo: one Thrift server port, called over TTHeader, TTHeaderFramed and Framed,
    and over TTHeader with multiplexed connections."""
    thrift_dir = ROOT / "examples" / "thrift_echo"
    ok = True
    async with serving(thrift_dir / "thrift_server.py") as addr:
        if addr is None:
            print("THRIFT: server failed to start", flush=True)
            return False
        for name in ("ttheader", "ttheader_framed", "framed"):
            print(f"THRIFT over {name.upper()} (server {addr}):", flush=True)
            ok = await run_client(thrift_dir / "thrift_client.py", "--addr", addr, "--transport", name) and ok
        print(f"THRIFT over TTHEADER, 2 multiplexed connections (server {addr}):", flush=True)
        client_args = ("--addr", addr, "--transport", "ttheader", "--mux", "2")
        ok = await run_client(thrift_dir / "thrift_client.py", *client_args) and ok
    return ok


async def main() -> int:
    failures = 0
    for protocol in PROTOBUF_TRANSPORTS:
        if not available(protocol):
            print(f"{protocol.name}: not available in this build (see the open issues)", flush=True)
            continue
        if not await run_one(protocol):
            failures += 1
    if available(TransportProtocol.TTHEADER) and not await run_thrift():
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
