"""The narrow interface every implementation adapter provides, and the loader for registry entries.

An adapter starts a server and connects a client. Load generators only ever see :class:`BenchClient`,
so kitex-grpc and each baseline run exactly the same measuring code.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from time import perf_counter
from typing import Any, Protocol, runtime_checkable

from bench.registry import Impl


class UnavailableError(Exception):
    """The implementation cannot run in this build (missing transport, package or generated code)."""


class BenchServer(Protocol):
    @property
    def address(self) -> str: ...

    async def stop(self) -> None: ...


class StoppableServer:
    """A :class:`BenchServer`: the address a server listens on and the coroutine function that stops
    it. (kitex-grpc's own ``Server`` is a BenchServer as it is.)"""

    def __init__(self, address: str, stop: Callable[[], Awaitable[None]]) -> None:
        self._address = address
        self._stop = stop

    @property
    def address(self) -> str:
        return self._address

    async def stop(self) -> None:
        await self._stop()


async def close_and_wait(server: Any) -> None:
    """Stop an asyncio (or grpclib) server: ``close()``, then ``await wait_closed()``."""
    server.close()
    await server.wait_closed()


class BidiStream(Protocol):
    async def send(self, message: Any) -> None: ...

    async def recv(self) -> Any | None:
        """The next message, or ``None`` once the server has finished."""
        ...

    async def close_send(self) -> None: ...


class BenchClient(Protocol):
    def request(self, payload: bytes) -> Any: ...

    async def unary(self, request: Any) -> Any: ...

    def bidi(self) -> AbstractAsyncContextManager[BidiStream]: ...

    async def close(self) -> None: ...


@runtime_checkable
class BlockingClient(Protocol):
    """A client whose calls block the calling thread (thriftpy2's sync client).

    Load generators run it the way its users do: each of N plain threads opens its own connection with
    :meth:`connect_caller` and calls in a loop (see :func:`drive_threads`).
    """

    def request(self, payload: bytes) -> Any: ...

    def connect_caller(self) -> Callable[[Any], Any]:
        """A blocking unary call on a connection of its own, for one thread."""
        ...

    async def close(self) -> None: ...


def drive_threads(
    callers: list[Callable[[Any], Any]],
    request: Any,
    more: Callable[[], bool],
    done: Callable[[float, float], None],
    failed: Callable[[BaseException], None],
) -> None:
    """Call ``request`` from one plain thread per caller (``BlockingClient.connect_caller``) until
    ``more()`` is false; blocks until every thread has stopped.

    ``done(start, end)`` is called after each call (perf_counter times), ``failed(exc)`` once per thread
    that stops on an error.
    """

    def worker(call: Callable[[Any], Any]) -> None:
        while more():
            start = perf_counter()
            try:
                call(request)
            except Exception as exc:
                failed(exc)
                return  # a failing impl must not spin; the error is reported
            done(start, perf_counter())

    # daemon: a server that stops answering must not keep the load generator's process alive
    workers = [threading.Thread(target=worker, args=(call,), daemon=True) for call in callers]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()


class Adapter(Protocol):
    async def start_server(self, host: str) -> BenchServer:
        """Listen on ``host`` at a free port; raise :class:`UnavailableError` if this build cannot."""
        ...

    async def connect(self, address: str) -> BenchClient | BlockingClient:
        """A client of the server at ``address``; raise :class:`UnavailableError` if this build cannot."""
        ...


def load(impl: Impl) -> Adapter:
    """Import the impl's adapter module and build it; a missing module or package is UnavailableError."""
    module_name, _, factory_name = impl.adapter.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnavailableError(f"cannot import {module_name}: {exc}") from exc
    factory = getattr(module, factory_name)
    adapter: Adapter = factory(impl.arg)
    return adapter


# The largest message every server and client of a run accepts, when set (bench/large.py sets it: its
# 16 MiB messages are over the 4 MiB default of gRPC and kitex-grpc). Unset: each library's default.
MAX_MESSAGE_ENV = "KITEX_BENCH_MAX_MESSAGE"


def max_message_size() -> int | None:
    value = os.environ.get(MAX_MESSAGE_ENV)
    return int(value) if value else None


# A one-way server stream (bench/large.py): the request names the number of replies in ``seq`` and
# each reply's payload size in ``message``; the server sends that many replies of one payload.
_stream_payloads: dict[int, bytes] = {}


def stream_request_fields(count: int, size: int) -> dict[str, Any]:
    return {"message": str(size), "payload": b"", "seq": count}


def stream_reply_spec(request: Any) -> tuple[int, dict[str, Any]]:
    """How many replies a ServerStream request asks for, and the fields of each (one payload, reused)."""
    size = int(request.message)
    payload = _stream_payloads.get(size)
    if payload is None:
        payload = _stream_payloads[size] = b"s" * size
    return int(request.seq), {"message": "", "payload": payload, "seq": 0}


def reply_fields(request: Any) -> dict[str, Any]:
    """What every echo server sends back: the request's fields, unchanged."""
    return {"message": request.message, "payload": request.payload, "seq": request.seq}
