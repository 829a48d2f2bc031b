"""An echo server in a process of its own, for measuring the server's memory while it serves.

``python -m tests.ttheader.memory_server thrift|protobuf <max_message_size>`` serves the Thrift Echo
(``idl/echo.thrift``) or the Protobuf Echo (Kitex Protobuf) over the TTHeader transport on a free
127.0.0.1 port and prints ``LISTENING <address> compiled|plain`` (the build of its TTHeader server).
Then, one command per line on stdin:

- ``reset``: forget the peaks so far; answers ``OK``;
- ``peak``: answers ``PEAK <rss> <traced>``: how far the resident set rose above its size at the last
  ``reset`` (``VmHWM`` after ``/proc/self/clear_refs`` reset it), and the peak of the memory Python
  allocated since then (tracemalloc), both in bytes. ``rss`` is -1 where the kernel does not let a
  process reset its peak.

The commands are answered from a thread: the measurement never waits for the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
import threading
import tracemalloc
from typing import Any

_VM = re.compile(r"^(VmHWM|VmRSS):\s+(\d+) kB$", re.MULTILINE)


def vm_sizes() -> dict[str, int]:
    """This process's ``VmHWM`` and ``VmRSS`` in bytes (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        return {name: int(kib) * 1024 for name, kib in _VM.findall(f.read())}


def reset_peak() -> int | None:
    """Reset the kernel's peak RSS to the current RSS; that RSS, or None if it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (Documentation/filesystems/proc.rst, clear_refs)
    except OSError:
        return None
    return vm_sizes()["VmRSS"]


def commands(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    base: int | None = None
    for line in sys.stdin:
        command = line.strip()
        if command == "reset":
            tracemalloc.stop()
            tracemalloc.start()
            base = reset_peak()
            print("OK", flush=True)
        elif command == "peak":
            rss = -1 if base is None else vm_sizes()["VmHWM"] - base
            print(f"PEAK {rss} {tracemalloc.get_traced_memory()[1]}", flush=True)
    loop.call_soon_threadsafe(stop.set)  # stdin closed: the test is done


async def main(kind: str, max_message_size: int) -> None:
    import kitex_grpc
    from kitex_grpc import server
    from kitex_grpc.compiled import runs_compiled

    opts = (
        server.with_service_addr("127.0.0.1:0"),
        server.with_max_message_size(max_message_size),
    )
    svr: Any
    if kind == "thrift":
        from tests.ttheader.support import ECHO_INFO, ThriftEcho

        svr = kitex_grpc.new_server(*opts, server.with_transport_protocol("ttheader"))
        svr.register_service(ECHO_INFO, ThriftEcho())
    else:
        from gen.echo.v1 import echo_kitex
        from tests.support import EchoService

        svr = echo_kitex.new_server(EchoService(), *opts, server.with_transport_protocol("ttheader_framed"))
    await svr.start()
    stop = asyncio.Event()
    threading.Thread(target=commands, args=(asyncio.get_running_loop(), stop), daemon=True).start()
    # Whether this process serves with the compiled TTHeader codecs (the message encoder and decoder
    # of wire.py): a child process does not go through tests/conftest.py, so it loads the compiled
    # modules even when the tests run plain.
    compiled = runs_compiled(importlib.import_module("kitex_grpc.transport.ttheader.wire"))
    print(f"LISTENING {svr.address} {'compiled' if compiled else 'plain'}", flush=True)
    try:
        await stop.wait()
    finally:
        await svr.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
