"""When the TTHeader port runs a connection's requests (kitex_grpc/transport/ttheader/scheduler.py):
each on an asyncio task of its own; over Framed one at a time in order, over TTHeader all at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder, encode
from tests.ttheader.support import ECHO_INFO, Reply, Req, ThriftEcho, open_raw, read_frame, serve


class RecordingEcho(ThriftEcho):
    """Records when each request starts and ends, and the task it runs on. First thing, before anything
    else of the handler runs, ``wait:<ms>`` suspends that long and ``hold:<n>`` until ``n`` other
    requests have ended (it never ends if they cannot start before it does)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []
        self.tasks: list[asyncio.Task[Any] | None] = []
        self._ended = 0
        self._an_end = asyncio.Event()

    async def echo(self, req: Any) -> Any:
        msg = req.message or ""
        if msg.startswith("wait:"):
            await asyncio.sleep(int(msg[5:]) / 1000)
        elif msg.startswith("hold:"):
            while self._ended < int(msg[5:]):
                self._an_end.clear()
                await self._an_end.wait()
        self.events.append(("start", msg))
        self.tasks.append(asyncio.current_task())
        await asyncio.sleep(0)  # every request suspends at least once
        self.events.append(("end", msg))
        self._ended += 1
        self._an_end.set()
        return Reply(message=msg, seq=req.seq)


def _request(message: str, seq: int, framing: Framing) -> bytes:
    method = ECHO_INFO.methods["echo"]
    body = method.serialize_request(method.pack_request(Req(message=message, seq=seq)))
    if framing.has_header:
        return encode(framing, THRIFT, "echo", 1, seq, body, {"isn": "Echo"}, {22: "1"})
    return encode(framing, THRIFT, "echo", 1, seq, body)


async def _exchange(handler: RecordingEcho, names: list[str], framing: Framing) -> list[tuple[int, str]]:
    """Send ``names`` as pipelined requests in one write; the replies as they arrive."""
    method = ECHO_INFO.methods["echo"]
    decoder = MessageDecoder(framing, 1 << 20)
    async with serve(handler=handler) as (svr, _):
        reader, writer = await open_raw(svr.address)
        try:
            writer.write(b"".join(_request(n, i + 1, framing) for i, n in enumerate(names)))
            replies = []
            for _ in names:
                (msg,) = decoder.receive_data(await read_frame(reader))
                assert msg.msg_type == 2, msg
                replies.append((msg.seq_id, method.deserialize_response(msg.body).success.message))
        finally:
            writer.close()
    return replies


async def test_framed_requests_behind_a_suspended_first_one_run_one_at_a_time_in_order() -> None:
    handler = RecordingEcho()
    names = ["wait:30", "a", "wait:5", "b"]
    replies = await _exchange(handler, names, Framing.FRAMED)
    assert replies == [(i + 1, n) for i, n in enumerate(names)]
    # each request started only once the one before it had ended
    assert handler.events == [(kind, n) for n in names for kind in ("start", "end")]


async def test_ttheader_requests_start_at_once_and_a_slow_first_one_is_answered_last() -> None:
    handler = RecordingEcho()
    names = ["hold:2", "a", "b"]  # the first ends only after the two behind it: they must run at once
    replies = await _exchange(handler, names, Framing.TTHEADER)
    assert sorted(replies[:2]) == [(2, "a"), (3, "b")] and replies[2] == (1, "hold:2")
    assert handler.events[-2:] == [("start", "hold:2"), ("end", "hold:2")]


@pytest.mark.parametrize("framing", [Framing.FRAMED, Framing.TTHEADER], ids=lambda f: f.name)
async def test_each_request_runs_on_a_task_of_its_own(framing: Framing) -> None:
    handler = RecordingEcho()
    names = ["a", "b", "c"]
    await _exchange(handler, names, framing)
    tasks = handler.tasks
    assert len(tasks) == 3 and all(task is not None for task in tasks)
    assert len({id(task) for task in tasks}) == 3  # the list keeps them alive: ids are not reused
