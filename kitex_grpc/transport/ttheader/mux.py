"""Multiplexed TTHeader connections (Kitex ``WithMuxConnection``, ``pkg/remote/trans/netpollmux``).

With ``client.with_mux_connection(n)`` each address gets ``n`` shared connections, picked round-robin
per call, and any number of requests are in flight on each at once. Replies are matched to callers
by the TTHeader seq id (the header's SEQ field, which Kitex servers copy from the request), so they
may come back in any order. TTHeader only: Framed and Buffered have no header seq id to match on.

* Requests written during one event-loop turn leave in one write per connection (the first queues a
  flush with ``call_soon``); a server that answers a batch in one write (ours does) makes a
  round trip cost two syscalls per batch instead of per call.
* A call that is cancelled or times out forgets its seq id; a reply that comes later is dropped
  (debug log), and the connection carries on.
* A bad frame or a closed connection fails every call in flight on it with RemoteOrNetworkError;
  the pool dials a new one for the next call.
* A reply tagged ``crrst`` (the server is shutting down) retires the connection: no new calls,
  closed once its last reply is in.

A Go Kitex server answers a pipelined connection in order unless it runs with
``server.WithMuxTransport()``; a kitex-grpc server runs TTHeader requests on one connection
concurrently (:mod:`kitex_grpc.transport.ttheader.server`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kitex_grpc.errors import RemoteOrNetworkError
from kitex_grpc.header_keys import CONN_RESET_KEY
from kitex_grpc.transport.ttheader.connection import ReplyStream
from kitex_grpc.transport.ttheader.wire import Framing, Message
from kitex_grpc.transport.turn_writer import TurnWriter

__all__ = ["MuxConnection", "MuxPool"]

logger = logging.getLogger("kitex_grpc.transport.ttheader")


class MuxConnection(ReplyStream):
    """A TCP connection carrying many TTHeader calls at once, matched by seq id."""

    def __init__(self, address: str, framing: Framing, max_frame_size: int) -> None:
        if not framing.has_header:
            raise ValueError(f"mux connections need a TTHeader framing, not {framing.value}")
        super().__init__(address, framing, max_frame_size)
        self._waiters: dict[int, asyncio.Future[Message]] = {}
        self._out = TurnWriter(self._loop, self._send)  # requests of one loop turn in one write

    def data_received(self, data: memoryview) -> None:
        messages = self._replies(data)
        if messages is None:
            return
        waiters = self._waiters
        for message in messages:
            waiter = waiters.pop(message.frame_seq, None)
            if CONN_RESET_KEY in message.str_info:
                self.retired = True
            if waiter is None:
                logger.debug(
                    "ttheader mux: dropped a reply nobody waits for (seq %d) from %s",
                    message.frame_seq,
                    self.address,
                )
            elif not waiter.done():
                waiter.set_result(message)
        if self.retired and not waiters:
            self.close()

    # -- use ----------------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Alive and not retired: may take new calls."""
        return not self.retired and self.alive

    def send(self, data: bytes) -> None:
        """Queue a request that gets no reply (one-way)."""
        self._check()
        self._out.write(data)

    def start(self, seq_id: int, data: bytes) -> asyncio.Future[Message]:
        """Queue a request; the future gets the reply with its seq id.

        A caller that stops waiting (cancelled, timed out) must call :meth:`forget`.
        """
        self._check()
        if seq_id in self._waiters:
            raise RemoteOrNetworkError(f"seq id {seq_id} is already in flight to {self.address}")
        waiter: asyncio.Future[Message] = self._loop.create_future()
        self._waiters[seq_id] = waiter
        self._out.write(data)
        return waiter

    def forget(self, seq_id: int, waiter: asyncio.Future[Message]) -> None:
        """Stop waiting for ``seq_id``: a reply that comes later is dropped; the connection carries on."""
        if self._waiters.get(seq_id) is waiter:
            del self._waiters[seq_id]
            if self.retired and not self._waiters:
                self.close()

    def retire(self) -> None:
        """Take no new calls; close once the calls in flight have their replies."""
        self.retired = True
        if not self._waiters:
            self.close()

    def close(self) -> None:
        """Close after writing what is queued (calls still in flight fail when it closes)."""
        self._out.flush()
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._closed = True
        self._out.clear()
        if self._transport is not None:
            self._transport.abort()

    # -- internals ------------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _fail(self, error: RemoteOrNetworkError) -> None:
        logger.warning("ttheader mux: %s; closing the connection", error)
        self._error = error
        self._fail_calls(error)
        self.abort()

    def _fail_calls(self, error: RemoteOrNetworkError) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(error)


Dial = Callable[[str, float], Awaitable[MuxConnection]]


class MuxPool:
    """``size`` shared connections per address, picked round-robin, dialled on first use.

    Callers that find a slot being dialled wait for that dial instead of dialling again; a failed
    dial fails them all with its GetConnectionError, and the next call dials afresh.
    """

    def __init__(self, size: int, dial: Dial) -> None:
        if size < 1:
            raise ValueError(f"mux pool size must be >= 1, got {size}")
        self._size = size
        self._dial = dial
        self._slots: dict[str, list[MuxConnection | asyncio.Future[MuxConnection] | None]] = {}
        self._turn: dict[str, int] = {}

    @property
    def size(self) -> int:
        return self._size

    def connections(self) -> list[MuxConnection]:
        return [c for slots in self._slots.values() for c in slots if isinstance(c, MuxConnection)]

    def ready(self, address: str) -> MuxConnection | None:
        """The next connection in turn if it is open and takes calls (the hot path), else None."""
        slots = self._slots.get(address)
        if slots is None:
            return None
        turn = self._turn[address]
        slot = slots[turn]
        if isinstance(slot, MuxConnection) and slot.usable:
            self._turn[address] = (turn + 1) % self._size
            return slot
        return None

    async def get(self, address: str, connect_timeout: float) -> MuxConnection:
        """The next connection in turn, dialled (or waited for) if it is not open."""
        slots = self._slots.get(address)
        if slots is None:
            slots = self._slots[address] = [None] * self._size
        turn = self._turn.get(address, 0)
        self._turn[address] = (turn + 1) % self._size
        slot = slots[turn]
        if isinstance(slot, MuxConnection):
            if slot.usable:
                return slot
            slot = None
        if slot is None:
            slot = asyncio.ensure_future(self._dial(address, connect_timeout))
            slots[turn] = slot
            slot.add_done_callback(lambda done: self._dialled(address, turn, done))
        return await asyncio.shield(slot)

    def _dialled(self, address: str, index: int, done: asyncio.Future[MuxConnection]) -> None:
        slots = self._slots.get(address)
        if slots is None or slots[index] is not done:
            if not done.cancelled() and done.exception() is None:
                done.result().close()  # the address was removed (or the pool closed) meanwhile
            return
        if done.cancelled() or done.exception() is not None:
            slots[index] = None
        else:
            slots[index] = done.result()

    def remove_address(self, address: str) -> None:
        """Forget ``address`` (the caller retires its connections); a dial under way is closed when done."""
        self._slots.pop(address, None)
        self._turn.pop(address, None)

    def clear(self) -> None:
        """Forget every address and cancel dials under way (the caller closes the connections)."""
        for slots in self._slots.values():
            for slot in slots:
                if isinstance(slot, asyncio.Future):
                    slot.cancel()
        self._slots.clear()
        self._turn.clear()
