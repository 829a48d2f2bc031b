"""``make demo``: run the Echo server and client over every transport this build has.

For each transport the server runs in its own process; the client calls it and prints each call
type's result; then the server gets SIGTERM and drains.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
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


async def run_one(protocol: TransportProtocol) -> bool:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    name = protocol.value
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "server.py"), "--addr", "127.0.0.1:0", "--transport", name,
        stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert server.stdout is not None
    try:
        line = await asyncio.wait_for(server.stdout.readline(), 30)
        if not line.startswith(b"LISTENING "):
            print(f"{protocol.name}: server failed to start", flush=True)
            return False
        addr = line.split()[1].decode()
        print(f"{protocol.name} (server {addr}):", flush=True)
        client = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "client.py"), "--addr", addr, "--transport", name, env=env
        )
        ok = await asyncio.wait_for(client.wait(), 60) == 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), 15)
        except TimeoutError:
            server.kill()
            await server.wait()
    return ok


async def run_thrift() -> bool:
    """examples/thrift_echo: one Thrift server port, called over TTHeader, TTHeaderFramed and Framed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    thrift_dir = ROOT / "examples" / "thrift_echo"
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(thrift_dir / "thrift_server.py"),
        "--addr",
        "127.0.0.1:0",
        stdout=subprocess.PIPE,
        env=env,
    )
    assert server.stdout is not None
    ok = True
    try:
        line = await asyncio.wait_for(server.stdout.readline(), 30)
        if not line.startswith(b"LISTENING "):
            print("THRIFT: server failed to start", flush=True)
            return False
        addr = line.split()[1].decode()
        for name in ("ttheader", "ttheader_framed", "framed"):
            print(f"THRIFT over {name.upper()} (server {addr}):", flush=True)
            client = await asyncio.create_subprocess_exec(
                sys.executable,
                str(thrift_dir / "thrift_client.py"),
                "--addr",
                addr,
                "--transport",
                name,
                env=env,
            )
            ok = await asyncio.wait_for(client.wait(), 60) == 0 and ok
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), 15)
        except TimeoutError:
            server.kill()
            await server.wait()
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
