"""Load generators, and the client process: ``python -m bench.clients <impl> <address> [options]``.

Every scenario runs warm-up then a measured window on the same connection. A call counts when it
*completes* inside the window; its latency is end minus start. Every loop is bounded both by the
window's end and by a call count.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import threading
import time
from array import array
from collections import deque
from dataclasses import asdict, dataclass

from bench import proc, registry
from bench.adapter import BenchClient, BlockingClient, UnavailableError, drive_threads, load

MAX_CALLS = 10_000_000  # per loop; far above what a few seconds can reach
GRACE = 30.0  # seconds past the window before a stuck scenario is abandoned


@dataclass
class Window:
    start: float  # end of warm-up
    end: float

    @classmethod
    def after(cls, warmup: float, duration: float) -> Window:
        start = time.perf_counter() + warmup
        return cls(start, start + duration)


@dataclass
class Result:
    count: int
    seconds: float
    rate: float
    p50_us: float
    p99_us: float
    mean_us: float
    errors: int
    first_error: str
    # CPU microseconds per completed call in the window, each process as a whole (None: not known)
    server_cpu_us: float | None = None
    client_cpu_us: float | None = None


class CpuMeter:
    """Both processes' CPU time at the start and at the end of the measured window.

    Which side runs out of CPU first sets the rate; this says which one it is, per call.
    """

    def __init__(self, window: Window, server_pid: int | None) -> None:
        self._server_pid = server_pid
        self._start: tuple[float | None, float] | None = None
        self._end: tuple[float | None, float] | None = None
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        loop.call_later(max(0.0, window.start - now), self._snap, True)
        loop.call_later(max(0.0, window.end - now), self._snap, False)

    def _snap(self, start: bool) -> None:
        server = proc.process_cpu_seconds(self._server_pid) if self._server_pid else None
        sample = (server, time.process_time())
        if start:
            self._start = sample
        else:
            self._end = sample

    def fill(self, result: Result) -> None:
        if self._start is None or self._end is None or not result.count:
            return
        (server0, client0), (server1, client1) = self._start, self._end
        result.client_cpu_us = (client1 - client0) / result.count * 1e6
        if server0 is not None and server1 is not None:
            result.server_cpu_us = (server1 - server0) / result.count * 1e6


class Recorder:
    def __init__(self, window: Window) -> None:
        self.window = window
        self.latencies = array("d")
        self.errors = 0
        self.first_error = ""

    def done(self, start: float, end: float) -> None:
        if self.window.start <= end <= self.window.end:
            self.latencies.append(end - start)

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]

    def result(self) -> Result:
        lat = sorted(self.latencies)
        n = len(lat)
        seconds = self.window.end - self.window.start

        def pct(q: float) -> float:
            return lat[min(n - 1, int(q * n))] * 1e6 if n else 0.0

        mean = sum(lat) / n * 1e6 if n else 0.0
        return Result(n, seconds, n / seconds, pct(0.50), pct(0.99), mean, self.errors, self.first_error)


async def unary(
    client: BenchClient | BlockingClient, payload: int, window: Window, concurrency: int
) -> Recorder:
    """``concurrency`` tasks, each calling in a loop: that many calls in flight at all times.

    A blocking client is driven from ``concurrency`` plain threads instead, one connection each.
    """
    rec = Recorder(window)
    request = client.request(b"x" * payload)
    if isinstance(client, BlockingClient):
        calls = itertools.count()  # next() is atomic: a thread-safe bound on the total
        end_at, perf, lock = window.end, time.perf_counter, threading.Lock()

        def failed(exc: BaseException) -> None:
            with lock:
                rec.error(exc)

        def more() -> bool:
            return perf() < end_at and next(calls) < MAX_CALLS

        callers = [client.connect_caller() for _ in range(concurrency)]
        await asyncio.to_thread(drive_threads, callers, request, more, rec.done, failed)
        return rec
    call = client.unary
    perf = time.perf_counter
    end_at = window.end

    async def worker() -> None:
        for _ in range(MAX_CALLS):
            start = perf()
            if start >= end_at:
                return
            try:
                await call(request)
            except Exception as exc:
                rec.error(exc)
                return  # a failing impl must not spin; the error is reported
            rec.done(start, perf())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return rec


async def bidi_pingpong(client: BenchClient, payload: int, window: Window, _inflight: int) -> Recorder:
    """One stream: send one message, wait for its echo, repeat."""
    rec = Recorder(window)
    request = client.request(b"x" * payload)
    perf = time.perf_counter
    async with client.bidi() as stream:
        try:
            for _ in range(MAX_CALLS):
                start = perf()
                if start >= window.end:
                    break
                await stream.send(request)
                if await stream.recv() is None:
                    raise EOFError("server ended the stream early")
                rec.done(start, perf())
            await stream.close_send()
            await stream.recv()  # the server's end of stream
        except Exception as exc:
            rec.error(exc)
    return rec


async def bidi_pipelined(client: BenchClient, payload: int, window: Window, inflight: int) -> Recorder:
    """One stream, a sender and a receiver task, at most ``inflight`` messages unanswered."""
    rec = Recorder(window)
    request = client.request(b"x" * payload)
    perf = time.perf_counter
    credit = asyncio.Semaphore(inflight)
    sent_at: deque[float] = deque()  # echoes come back in order, so FIFO pairs them with sends
    async with client.bidi() as stream:

        async def sender() -> None:
            for _ in range(MAX_CALLS):
                await credit.acquire()
                now = perf()
                if now >= window.end:
                    break
                sent_at.append(now)
                await stream.send(request)
            await stream.close_send()

        async def receiver() -> None:
            for _ in range(MAX_CALLS):
                if await stream.recv() is None:
                    return
                rec.done(sent_at.popleft(), perf())
                credit.release()

        try:
            async with asyncio.TaskGroup() as tasks:  # one side failing cancels the other
                tasks.create_task(sender())
                tasks.create_task(receiver())
        except Exception as exc:
            rec.error(exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc)
    return rec


SCENARIOS = {
    registry.UNARY: unary,
    registry.BIDI_PINGPONG: bidi_pingpong,
    registry.BIDI_PIPELINED: bidi_pipelined,
}


async def run_case(args: argparse.Namespace) -> Result:
    impl = registry.get(args.impl)
    client = await load(impl).connect(args.address)
    try:
        window = Window.after(args.warmup, args.duration)
        meter = CpuMeter(window, args.server_pid)
        scenario = SCENARIOS[args.scenario]
        budget = args.warmup + args.duration + GRACE
        with proc.profiled(args.profile):
            rec = await asyncio.wait_for(scenario(client, args.payload, window, args.inflight), budget)
        result = rec.result()
        meter.fill(result)
        return result
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__)
    p.add_argument("impl", choices=list(registry.BY_NAME))
    p.add_argument("address", help="host:port the server printed")
    p.add_argument("--scenario", choices=list(SCENARIOS), default=registry.UNARY)
    p.add_argument("--payload", type=int, default=64, help="payload bytes per message")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--inflight", type=int, default=64, help="concurrent calls / messages in flight")
    p.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    p.add_argument("--profile", default=None, help="write cProfile stats of the scenario here")
    p.add_argument("--server-pid", type=int, default=None, help="also measure this process's CPU per call")
    args = p.parse_args(argv)
    proc.pin_cpu(args.cpu)
    try:
        result = proc.run(run_case(args))
    except UnavailableError as exc:
        proc.emit(proc.UNAVAILABLE, str(exc))
        return proc.EXIT_UNAVAILABLE
    proc.emit(proc.RESULT, json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
