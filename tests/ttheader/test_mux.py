"""``client.with_mux_connection``: many calls in flight on a few shared TTHeader connections."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

from kitex_grpc import client
from kitex_grpc.errors import GetConnectionError, RemoteOrNetworkError, RPCTimeoutError
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder
from tests.ttheader.support import (
    Req,
    answer_each,
    connect,
    read_frame,
    reply_bytes,
    scripted,
    serve,
    watch_connections,
)


def transport_of(cli: Any) -> Any:
    return cli.client._transport


def test_mux_needs_a_positive_count() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="with_mux_connection: expected a positive integer"):
            client.with_mux_connection(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["framed", "grpc"])
async def test_mux_needs_a_ttheader_transport(transport: str) -> None:
    with pytest.raises(ValueError, match="with_mux_connection: multiplexing needs a TTHeader transport"):
        async with connect("127.0.0.1:1", transport, client.with_mux_connection(1)):
            pass


@pytest.mark.parametrize("transport", ["ttheader", "ttheader_framed"])
async def test_many_calls_share_the_configured_connections(transport: str) -> None:
    async with serve() as (svr, _):
        conns = watch_connections(svr)
        async with connect(svr.address, transport, client.with_mux_connection(2)) as cli:
            replies = await asyncio.gather(*(cli.echo(Req(message=f"m{i}", seq=i)) for i in range(200)))
            assert [(r.message, r.seq) for r in replies] == [(f"m{i}", i) for i in range(200)]
            assert len(conns) == 2
            assert transport_of(cli).open_connections(svr.address) == 2
            assert await cli.notify(Req(message="one-way")) is None  # shares them too
            assert (await cli.echo(Req(message="last-notify"))).message == "one-way"
            assert len(conns) == 2


async def test_replies_are_matched_by_seq_id_whatever_their_order() -> None:
    async with (
        serve() as (svr, handler),
        connect(svr.address, "ttheader", client.with_mux_connection(1)) as cli,
    ):
        gated = asyncio.ensure_future(cli.echo(Req(message="gate")))
        await asyncio.wait_for(handler.entered.wait(), 5)
        # later calls on the same connection overtake the suspended one
        fast = await asyncio.wait_for(asyncio.gather(*(cli.echo(Req(message=f"f{i}")) for i in range(5))), 5)
        assert [r.message for r in fast] == [f"f{i}" for i in range(5)]
        assert not gated.done()
        handler.release.set()
        assert (await asyncio.wait_for(gated, 5)).message == "gate"
        assert transport_of(cli).open_connections(svr.address) == 1


async def test_a_timed_out_call_leaves_the_connection_to_the_others(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "kitex_grpc.transport.ttheader")
    async with serve() as (svr, handler):
        conns = watch_connections(svr)
        async with connect(
            svr.address, "ttheader", client.with_mux_connection(1), client.with_rpc_timeout(0.05)
        ) as cli:
            with pytest.raises(RPCTimeoutError) as timed_out:
                await cli.echo(Req(message="gate"))
            assert (await cli.echo(Req(message="after"))).message == "after"
            handler.release.set()
            if timed_out.value.remote:
                # The server's own deadline (the RPC timeout travels in the TTHeader) answered before
                # the client's timer fired, as a loaded machine can order them: no late reply exists.
                assert "dropped a reply nobody waits for" not in caplog.text
            else:  # the late reply of the timed-out call comes back and is dropped
                for _ in range(100):  # bounded: until the drop is logged (each call is a round trip)
                    if "dropped a reply nobody waits for" in caplog.text:
                        break
                    assert (await cli.echo(Req(message="more"))).message == "more"
                assert "dropped a reply nobody waits for" in caplog.text
            assert (await cli.echo(Req(message="more"))).message == "more"
            assert len(conns) == 1 and transport_of(cli).open_connections(svr.address) == 1


async def test_a_vanishing_server_fails_every_call_in_flight_and_the_next_call_redials() -> None:
    arrived = asyncio.Event()
    seen: list[int] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(seen) == 0:  # the first connection reads three requests and goes away unanswered
            for _ in range(3):
                seen.append(len(await read_frame(reader)))
            arrived.set()
            return
        await answer_each(reader, writer)

    async with (
        scripted(script) as (address, count),
        connect(address, "ttheader", client.with_mux_connection(1)) as cli,
    ):
        calls = [asyncio.ensure_future(cli.echo(Req(message=f"m{i}"))) for i in range(3)]
        await asyncio.wait_for(arrived.wait(), 5)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        assert all(isinstance(r, RemoteOrNetworkError) for r in results), results
        assert all("closed by peer" in str(r) for r in results)
        assert (await cli.echo(Req(message="again"))).message == "r"
        assert count[0] == 2


async def test_a_bad_frame_fails_the_calls_in_flight() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        await read_frame(reader)
        writer.write(b"\x00\x00\x00\x10\xde\xad" + b"\x00" * 14)  # bad magic
        await reader.read()

    async with (
        scripted(script) as (address, _),
        connect(address, "ttheader", client.with_mux_connection(1)) as cli,
    ):
        results = await asyncio.wait_for(
            asyncio.gather(*(cli.echo(Req(message=f"m{i}")) for i in range(2)), return_exceptions=True), 5
        )
        assert all(isinstance(r, RemoteOrNetworkError) and "bad reply" in str(r) for r in results), results


async def test_crrst_retires_the_connection_after_its_last_reply() -> None:
    connections: list[int] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        if len(connections) == 1:
            first, second = await read_frame(reader), await read_frame(reader)
            writer.write(reply_bytes(first, crrst="1"))  # retired, but the second call is still in flight
            writer.write(reply_bytes(second))
        await answer_each(reader, writer)

    async with (
        scripted(script) as (address, count),
        connect(address, "ttheader", client.with_mux_connection(1)) as cli,
    ):
        replies = await asyncio.wait_for(
            asyncio.gather(cli.echo(Req(message="a")), cli.echo(Req(message="b"))), 5
        )
        assert [r.message for r in replies] == ["r", "r"]
        assert (await cli.echo(Req(message="c"))).message == "r"
        assert count[0] == 2  # the retired connection was closed; the third call dialled anew


async def test_requests_of_one_loop_turn_leave_in_one_write() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer_each(reader, writer)

    async with (
        scripted(script) as (address, _),
        connect(address, "ttheader", client.with_mux_connection(1)) as cli,
    ):
        transport = transport_of(cli)
        await transport.preconnect(address, 5.0)
        [conn] = transport._mux.connections()
        writes: list[bytes] = []
        socket_transport = conn._transport
        write = socket_transport.write
        socket_transport.write = lambda data: (writes.append(bytes(data)), write(data))[1]
        replies = await asyncio.wait_for(
            asyncio.gather(*(cli.echo(Req(message=f"m{i}")) for i in range(10))), 5
        )
        assert [r.message for r in replies] == ["r"] * 10
    assert len(writes) == 1
    assert len(MessageDecoder(Framing.TTHEADER, 1 << 20).receive_data(writes[0])) == 10


async def test_graceful_stop_answers_every_concurrent_call_of_a_connection() -> None:
    async with (
        serve() as (svr, handler),
        connect(svr.address, "ttheader", client.with_mux_connection(1)) as cli,
    ):
        calls = [asyncio.ensure_future(cli.echo(Req(message=m))) for m in ("gate", "sleep:30", "plain")]
        await asyncio.wait_for(handler.entered.wait(), 5)
        stopping = asyncio.ensure_future(svr.stop())
        assert (await asyncio.wait_for(calls[2], 5)).message == "plain"
        assert not stopping.done()  # two requests of the connection are still being served
        handler.release.set()
        assert [(await asyncio.wait_for(c, 5)).message for c in calls[:2]] == ["gate", "sleep:30"]
        await asyncio.wait_for(stopping, 5)
        # every reply carried crrst: the connection was retired and closed
        assert transport_of(cli).open_connections(svr.address) == 0


async def test_a_refused_dial_fails_every_waiting_call_and_the_next_call_dials_again() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # nothing listens here once closed
    async with connect(address, "ttheader", client.with_mux_connection(1)) as cli:
        for _ in range(2):
            results = await asyncio.wait_for(
                asyncio.gather(*(cli.echo(Req(message="x")) for _ in range(5)), return_exceptions=True), 5
            )
            assert all(isinstance(r, GetConnectionError) for r in results), results
        assert transport_of(cli).open_connections(address) == 0


async def test_closing_the_client_fails_the_calls_in_flight() -> None:
    async with serve() as (svr, handler):
        async with connect(svr.address, "ttheader", client.with_mux_connection(1)) as cli:
            call = asyncio.ensure_future(cli.echo(Req(message="gate")))
            await asyncio.wait_for(handler.entered.wait(), 5)
            await cli.close()
            with pytest.raises(RemoteOrNetworkError):
                await asyncio.wait_for(call, 5)
        handler.release.set()


async def test_a_removed_address_closes_its_connection_after_the_calls_in_flight() -> None:
    async with serve() as (svr, handler):
        conns = watch_connections(svr)
        async with connect(svr.address, "ttheader", client.with_mux_connection(1)) as cli:
            gated = asyncio.ensure_future(cli.echo(Req(message="gate")))
            await asyncio.wait_for(handler.entered.wait(), 5)
            await transport_of(cli).close_address(svr.address)  # what discovery does on removal
            assert len(conns) == 1  # still open: a call is in flight on it
            handler.release.set()
            assert (await asyncio.wait_for(gated, 5)).message == "gate"
            await conns.until(lambda n: n == 0)
            assert (await cli.echo(Req(message="next"))).message == "next"  # dials afresh
            assert len(conns) == 1
