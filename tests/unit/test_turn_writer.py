"""TurnWriter: the frames of one loop turn leave joined in one send; a limit sends early."""

from __future__ import annotations

import asyncio

from kitex_grpc.transport.turn_writer import TurnWriter


async def _next_turn() -> None:
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


async def test_frames_of_one_turn_leave_in_one_send() -> None:
    sent: list[bytes] = []
    writer = TurnWriter(asyncio.get_running_loop(), sent.append)
    for part in (b"a", b"bc", b"d"):
        writer.write(part)
    assert sent == []
    await _next_turn()
    assert sent == [b"abcd"]
    writer.write(b"e")
    await _next_turn()
    assert sent == [b"abcd", b"e"]


async def test_a_limit_sends_early_and_the_rest_at_the_turns_end() -> None:
    sent: list[bytes] = []
    writer = TurnWriter(asyncio.get_running_loop(), sent.append, limit=2)
    for part in (b"1", b"2", b"3"):
        writer.write(part)
    assert sent == [b"12"]
    await _next_turn()
    assert sent == [b"12", b"3"]


async def test_flush_sends_now_and_clear_drops() -> None:
    sent: list[bytes] = []
    writer = TurnWriter(asyncio.get_running_loop(), sent.append)
    writer.write(b"x")
    writer.flush()
    assert sent == [b"x"]
    writer.write(b"y")
    writer.clear()
    await _next_turn()
    assert sent == [b"x"]
