"""A server under ``run()`` for the SIGTERM drain test.

Prints "LISTENING <addr>" once serving. A ``gate`` call prints "ENTERED" and completes only after a
line "release" arrives on stdin. After ``run()`` returns it prints "STOPPED".
"""

from __future__ import annotations

import asyncio
import sys

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import server


class Gate(echo_kitex.EchoHandler):
    def __init__(self, release: asyncio.Event) -> None:
        self.release = release

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        if request.message == "gate":
            print("ENTERED", flush=True)
            await self.release.wait()
        return echo_pb2.EchoReply(message=request.message)


async def main() -> None:
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def watch_stdin() -> None:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() == "release":
            release.set()

    watcher = asyncio.create_task(watch_stdin())
    svr = echo_kitex.new_server(
        Gate(release), server.with_service_addr("127.0.0.1:0"), server.with_exit_wait_time(30)
    )
    await svr.start()
    print(f"LISTENING {svr.address}", flush=True)
    await svr.run()
    print("STOPPED", flush=True)
    watcher.cancel()


if __name__ == "__main__":
    asyncio.run(main())
