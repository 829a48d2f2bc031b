"""A wait that was cancelled must not poison the next one: the call's waiter slot held the cancelled
future, and every later ``wait_send``/``wait_recv`` raised ``CancelledError`` at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kitex_grpc.protocol.h2_call import GrpcClientConnection, GrpcServerConnection
from kitex_grpc.transport.h2.client_conn import ClientCall, ClientConnection
from kitex_grpc.transport.h2.config import H2Tuning
from kitex_grpc.transport.h2.server_call import ServerCall
from kitex_grpc.transport.h2.server_conn import ServerConnection


async def _cancel_then_wait_again(wait: Callable[[], Awaitable[None]], wake: Callable[[], None]) -> None:
    first = asyncio.ensure_future(wait())
    await asyncio.sleep(0)  # parked on the waiter
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.ensure_future(wait())
    await asyncio.sleep(0)
    assert not second.done(), "the next wait ended at once (it reused the cancelled future)"
    wake()
    await asyncio.wait_for(second, 1)  # and a wake-up still reaches it


@pytest.mark.parametrize("kind", ["send", "recv"])
async def test_client_call_wait_after_a_cancelled_wait(kind: str) -> None:
    conn = ClientConnection(GrpcClientConnection(), H2Tuning(), "127.0.0.1:1")
    call = ClientCall(conn, 1, auto_ack=False)
    if kind == "send":
        await _cancel_then_wait_again(call.wait_send, call.wake_send)
    else:
        await _cancel_then_wait_again(call.wait_recv, call.wake_recv)


@pytest.mark.parametrize("kind", ["send", "recv"])
async def test_server_connection_wait_after_a_cancelled_wait(kind: str) -> None:
    conn = ServerConnection(GrpcServerConnection(), H2Tuning(), None, "127.0.0.1:1", set())  # type: ignore[arg-type]
    call = ServerCall(1, None)
    if kind == "send":
        await _cancel_then_wait_again(lambda: conn.park_writer(call.send_wakeup), call.wake_send)
    else:
        await _cancel_then_wait_again(lambda: conn.wait_recv(call), call.wake_recv)
