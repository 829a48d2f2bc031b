"""A bounded fuzz run against live servers of every transport, on real sockets on 127.0.0.1.

Inputs are valid captured requests (tests/fuzz/mutations.py) mutated by hypothesis, derandomized so
CI is repeatable. Each input goes on a fresh connection; the fuzzer reads what comes back for a short
bounded time and closes. Every ``CANARY_EVERY`` inputs a client on its own connection makes a normal
call that must answer within ``CANARY_BOUND``. At the end: the server still serves, its open file
descriptors are back within ``FD_SLACK`` of where they started, RSS grew by at most ``RSS_BOUND``, and
nothing was logged at ERROR by kitex_grpc nor reported to the loop's exception handler ("Task exception
was never retrieved" and the like).

The servers run in this process, so their descriptors are /proc/self/fd and their memory is this
process's VmRSS. ``KITEX_FUZZ_EXAMPLES`` sets the number of inputs per transport (``make fuzz``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import TransportProtocol, client, server
from tests.fuzz.mutations import Seed, h2_call, kitex_protobuf_seeds, mutated, ttheader_seeds, ttstream_seeds
from tests.support import NOT_ABOUT_DIALING, EchoService
from tests.ttheader.support import Req, connect, serve

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("KITEX_FUZZ_EXAMPLES", "600"))
CANARY_EVERY = 25
CANARY_BOUND = 5.0  # seconds; a normal call takes milliseconds, a loaded 2-core CI box can stall ~1 s
READ_TIMEOUT = 0.2  # how long the fuzzer waits for a reply or a close before it closes itself
CLOSE_BOUND = 10.0  # seconds for the server to close every fuzz connection once the client side has
FD_SLACK = 4  # descriptors a server may keep open lazily (e.g. grpcio's wakeup fds) beyond the baseline
# A leak of per-connection state shows as about (state size x inputs). With 600 inputs, 64 MiB leaves
# room for allocator high-water marks and hypothesis's own bookkeeping (a few MiB) yet catches a leak
# of 256 KiB or more per input (h2's default buffers and a connection's tasks are ~100 KiB); the long
# campaign scales the bound with the inputs so that the same per-input leak is caught.
RSS_BOUND = max(64 << 20, EXAMPLES * (16 << 10))


@dataclass
class Target:
    seeds: list[Seed]
    address: str
    canary: Callable[[], Awaitable[None]]


@asynccontextmanager
async def pb_target(protocol: TransportProtocol, seeds: list[Seed]) -> AsyncIterator[Target]:
    svr = echo_kitex.new_server(
        EchoService(), server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(protocol)
    )
    await svr.start()
    cli = echo_kitex.new_client(
        "echo",
        client.with_host_ports(svr.address),
        client.with_transport_protocol(protocol),
        NOT_ABOUT_DIALING,
    )

    async def canary() -> None:
        reply = await cli.Unary(echo_pb2.EchoRequest(message="canary", seq=1))
        assert (reply.message, reply.seq) == ("canary", 1)

    try:
        yield Target(seeds, svr.address, canary)
    finally:
        await cli.close()
        await svr.stop()


@asynccontextmanager
async def thrift_target() -> AsyncIterator[Target]:
    async with serve() as (svr, _), connect(svr.address, "ttheader") as cli:

        async def canary() -> None:
            assert (await cli.echo(Req(message="canary"))).message == "canary"

        yield Target(ttheader_seeds(), svr.address, canary)


@asynccontextmanager
async def ttstream_target() -> AsyncIterator[Target]:
    from tests.ttstream import support as tts

    async with tts.serve() as (svr, _), tts.connect(svr.address) as cli:

        async def canary() -> None:
            stream = await cli.EchoBidi()
            await stream.send(tts.Request(message="canary"))
            assert (await stream.recv()).message == "canary"
            await stream.close_send()

        yield Target(ttstream_seeds(), svr.address, canary)


TARGETS: dict[str, Callable[[], Any]] = {
    "grpc": lambda: pb_target(TransportProtocol.GRPC, [h2_call()]),
    "grpc_h2": lambda: pb_target(TransportProtocol.GRPC_H2, [h2_call()]),
    # One TTHeader port detects TTHeader, TTHeaderFramed, Framed and Buffered Thrift ...
    "ttheader_thrift": thrift_target,
    # ... and Kitex Protobuf, and hands HTTP/2 over to the h2 transport.
    "ttheader_protobuf": lambda: pb_target(TransportProtocol.TTHEADER, [*kitex_protobuf_seeds(), h2_call()]),
    # ... and TTHeader Streaming, handed over to the ttstream server.
    "ttstream": ttstream_target,
}


async def send(address: str, data: bytes, half_close: bool) -> int:
    """One input on a fresh connection: write it, read whatever comes back for a bounded time, close.
    Returns the number of bytes the server sent back."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    received = 0
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(READ_TIMEOUT):
            await writer.drain()
            while chunk := await reader.read(65536):
                received += len(chunk)
    except (TimeoutError, ConnectionError):
        pass  # no answer in time, or the server reset the connection: both fine for bad input
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
    return received


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Errors(logging.Handler):
    """ERROR records from kitex_grpc's loggers (protocol warnings are expected and not kept)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        cause = "" if record.exc_info is None else f" ({record.exc_info[0]!r}: {record.exc_info[1]})"
        self.records.append(f"{record.name}: {record.getMessage()}{cause}")


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_live_server(name: str) -> None:
    errors = Errors()
    kitex_logger = logging.getLogger("kitex_grpc")
    kitex_logger.addHandler(errors)
    unhandled: list[str] = []
    with asyncio.Runner() as runner, AsyncExitStackRunner(runner) as stack:
        runner.get_loop().set_exception_handler(lambda _loop, ctx: unhandled.append(repr(ctx)))
        target: Target = runner.run(stack.enter(TARGETS[name]()))

        async def canary() -> None:
            async with asyncio.timeout(CANARY_BOUND):
                await target.canary()

        async def settled(baseline: int) -> int:
            """The fd count once the server has closed the fuzz connections (bounded wait)."""
            with suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_BOUND):
                    while open_fds() > baseline + FD_SLACK:
                        await target.canary()  # a round trip: the server's loop handles pending closes
            return open_fds()

        # Warm up: every seed once as is (each must get through), so lazily made state is in the baseline.
        runner.run(canary())
        for seed in target.seeds:
            assert runner.run(send(target.address, seed.data, True)) > 0, f"no reply to the valid {seed.name}"
        runner.run(canary())
        gc.collect()
        fds_before, rss_before = runner.run(settled(open_fds())), rss()
        sent, answered = [0], [0]

        @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(mutated(target.seeds), st.sampled_from([True, True, True, False]))
        def fuzz_one(data: bytes, half_close: bool) -> None:
            answered[0] += runner.run(send(target.address, data, half_close)) > 0
            sent[0] += 1
            if sent[0] % CANARY_EVERY == 0:
                runner.run(canary())
            assert not unhandled, unhandled
            assert not errors.records, errors.records

        try:
            fuzz_one()
        finally:
            kitex_logger.removeHandler(errors)
        runner.run(canary())  # still serves
        gc.collect()  # "Task exception was never retrieved" is reported when the task is collected
        fds_after, rss_after = runner.run(settled(fds_before)), rss()
        assert not unhandled, unhandled
        assert not errors.records, errors.records
        assert fds_after <= fds_before + FD_SLACK, (fds_before, fds_after)
        assert rss_after - rss_before <= RSS_BOUND, (rss_before, rss_after)
        grown = (rss_after - rss_before) >> 10
        fds = f"{fds_before}->{fds_after}"
        print(f"{name}: {sent[0]} inputs ({answered[0]} answered), fds {fds}, RSS {grown:+d} KiB")


class AsyncExitStackRunner:
    """An AsyncExitStack driven through a Runner (the test is sync so hypothesis can drive each input)."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.stack = AsyncExitStack()

    def __enter__(self) -> AsyncExitStackRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.run(self.stack.aclose())

    async def enter(self, cm: Any) -> Any:
        return await self.stack.enter_async_context(cm)
