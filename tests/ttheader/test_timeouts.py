"""The TTHeader server's read timeout and idle timeout (Kitex WithReadWriteTimeout, WithMaxConnIdleTime).

A request that stops half-way (or trickles in) is cut off once its first byte is older than the read
timeout; a connection with nothing in progress is closed once idle that long; a connection whose
request is still being served is never idle; a pooled client survives the server closing its idle
connection. Real sockets on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from kitex_grpc import server
from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.transport.ttheader.wire import Framing, encode
from tests.ttheader.support import (
    ECHO_INFO,
    Req,
    connect,
    open_raw,
    read_frame,
    read_to_eof,
    serve,
    watch_connections,
)

READ_TIMEOUT = 0.2
IDLE = 0.2


def _framed_request(message: str, seq: int = 1) -> bytes:
    method = ECHO_INFO.methods["echo"]
    body = method.serialize_request(method.pack_request(Req(message=message, seq=seq)))
    return encode(Framing.FRAMED, THRIFT, "echo", 1, seq, body)


async def test_a_request_stalled_half_way_is_cut_off_after_the_read_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = _framed_request("stalled")
    async with serve(server.with_read_write_timeout(READ_TIMEOUT)) as (svr, _):
        reader, writer = await open_raw(svr.address)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="kitex_grpc.transport.ttheader"):
            writer.write(request[: len(request) // 2])
            assert await read_to_eof(reader) == b""  # closed, nothing answered
        assert time.monotonic() - started >= READ_TIMEOUT
        assert any("read timeout" in r.getMessage() for r in caplog.records)
        writer.close()
        async with connect(svr.address, "framed") as cli:  # the server serves on
            assert (await cli.echo(Req(message="after"))).message == "after"


async def test_trickling_bytes_do_not_extend_the_read_timeout() -> None:
    # One byte per 20 ms would take over 2 s; the request's first byte is what the timeout counts from.
    request = _framed_request("t" * 100)
    async with serve(server.with_read_write_timeout(READ_TIMEOUT)) as (svr, _):
        reader, writer = await open_raw(svr.address)
        eof = asyncio.ensure_future(read_to_eof(reader))
        sent = 0
        for byte in request:
            if eof.done():
                break
            writer.write(bytes([byte]))
            sent += 1
            await asyncio.sleep(0.02)  # the pace of the trickle, not a synchronisation
        assert await eof == b"" and sent < len(request)
        writer.close()


async def test_an_idle_connection_is_closed_and_a_busy_one_is_not() -> None:
    opts = (server.with_max_conn_idle_time(IDLE),)
    async with serve(*opts) as (svr, handler):
        idle_reader, idle_writer = await open_raw(svr.address)
        busy_reader, busy_writer = await open_raw(svr.address)
        # The busy connection's request is held by the handler for several idle periods.
        busy_writer.write(_framed_request("gate", seq=2))
        await asyncio.wait_for(handler.entered.wait(), 5)
        # The idle one answers one request, then sits: closed once IDLE has passed since the reply.
        # The server's idle clock starts when it writes the reply, after this write and before the
        # client reads the reply: only the time of this write is a sure lower bound.
        asked = time.monotonic()
        idle_writer.write(_framed_request("one", seq=1))
        await read_frame(idle_reader)
        assert await read_to_eof(idle_reader) == b""
        assert time.monotonic() - asked >= IDLE
        # The gated request was in progress all along: its connection is still there to answer it.
        handler.release.set()
        frame = await read_frame(busy_reader)
        assert b"gate" in frame
        for writer in (idle_writer, busy_writer):
            writer.close()


async def test_a_pooled_client_calls_on_after_the_server_closed_its_idle_connection() -> None:
    async with serve(server.with_max_conn_idle_time(IDLE)) as (svr, _), connect(svr.address) as cli:
        conns = watch_connections(svr)
        assert (await cli.echo(Req(message="first"))).message == "first"
        await conns.until(lambda n: n == 0)  # the server dropped the idle connection
        pooled: Any = cli.client._transport
        for _ in range(1000):  # bounded: loop turns until the client has read the server's FIN
            if not any(conn.alive for conn in pooled._conns):
                break
            await asyncio.sleep(0)
        assert not any(conn.alive for conn in pooled._conns)
        # The dead connection is not handed out again: the call dials afresh.
        assert (await cli.echo(Req(message="second"))).message == "second"


@pytest.mark.parametrize("option", [server.with_max_conn_idle_time, server.with_read_write_timeout])
@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_timeouts_must_be_positive(option: object, bad: float) -> None:
    with pytest.raises(ValueError, match="duration must be"):
        option(bad)  # type: ignore[operator]
