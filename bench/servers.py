"""The server process: ``python -m bench.servers <impl> <port-file|->``.

Starts the implementation's server on 127.0.0.1 at a free port, then reports the bound address: on
stdout as ``LISTENING host:port`` when the second argument is ``-``, else written to that file. Serves
until SIGTERM/SIGINT, until its stdin closes (the parent went away), or ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

from bench import proc, registry
from bench.adapter import UnavailableError, load

HOST = "127.0.0.1"  # loopback only


class _EOFWatch(asyncio.Protocol):
    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def eof_received(self) -> bool:
        self._stop.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


def _stdin_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _report(target: str, address: str) -> None:
    if target == "-":
        proc.emit(proc.LISTENING, address)
        return
    path = Path(target)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(address + "\n")
    tmp.replace(path)  # readers never see a half-written file


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.watch_stdin and _stdin_is_pipe():
        await loop.connect_read_pipe(lambda: _EOFWatch(stop), sys.stdin)
    adapter = load(registry.get(args.impl))
    server = await adapter.start_server(HOST)
    try:
        if args.probe:  # construct both sides, as a run would, then leave
            client = await adapter.connect(server.address)
            await client.close()
            return
        _report(args.target, server.address)
        with proc.profiled(args.profile):
            try:
                await asyncio.wait_for(stop.wait(), args.max_seconds)
            except TimeoutError:
                print(f"bench.servers: {args.impl} stopping after --max-seconds", file=sys.stderr)
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__)
    p.add_argument("impl", choices=list(registry.BY_NAME))
    p.add_argument("target", nargs="?", default="-", help="'-' for stdout, or a file for the address")
    p.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    p.add_argument("--profile", default=None, help="write cProfile stats of the serving period here")
    p.add_argument("--max-seconds", type=float, default=900.0, help="exit after this long regardless")
    p.add_argument("--no-stdin-watch", dest="watch_stdin", action="store_false")
    p.add_argument("--probe", action="store_true", help="start and stop at once; print OK or UNAVAILABLE")
    args = p.parse_args(argv)
    proc.pin_cpu(args.cpu)
    try:
        proc.run(serve(args))
    except UnavailableError as exc:
        proc.emit(proc.UNAVAILABLE, str(exc))
        return proc.EXIT_UNAVAILABLE
    if args.probe:
        proc.emit("OK", f"{args.impl} pid={os.getpid()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
