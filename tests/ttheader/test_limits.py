"""Server limits on the TTHeader transport: connections counted at accept, the excess closed unanswered."""

from __future__ import annotations

from typing import Any

from kitex_grpc import server
from kitex_grpc.observability import metrics
from kitex_grpc.rpcinfo import RPCInfo
from tests.ttheader.support import Req, connect, open_raw, read_to_eof, serve, watch_connections


class Rejections:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def record_rejection(self, kind: str, ri: RPCInfo | None) -> None:
        self.kinds.append(kind)


async def test_max_connections_closes_exactly_the_excess_connection_unanswered() -> None:
    rejections = Rejections()
    previous = metrics.set_default_recorder(rejections)
    try:
        reported: list[str] = []
        opts = (server.with_limit(max_connections=2), server.with_limit_reporter(reported.append))
        async with serve(*opts) as (svr, handler):
            conns = watch_connections(svr)
            limiter: Any = svr.limiter
            assert limiter is not None and not limiter.count_peers  # the transport counts connections
            async with connect(svr.address, "ttheader") as first, connect(svr.address, "framed") as second:
                # two connections, each counted once however many calls it carries
                for _ in range(3):
                    assert (await first.echo(Req(message="a"))).message == "a"
                    assert (await second.echo(Req(message="b"))).message == "b"
                assert limiter.connections.connections == 2

                reader, writer = await open_raw(svr.address)
                assert await read_to_eof(reader) == b""  # closed without a byte of reply
                writer.close()
                assert limiter.connections.rejected == 1
                assert rejections.kinds == [metrics.REJECT_CONNECTION_LIMIT]
                # one rejection, seen by the server's stats and its reporter as well
                assert limiter.stats.conn_rejected == 1 and reported == ["connection"]
                assert len(conns) == 2

            # both clients closed; once the server has seen both go (a connection releases its slot
            # before it leaves the set), a new connection is accepted and served
            await conns.until(lambda n: n == 0)
            assert limiter.connections.connections == 0
            async with connect(svr.address) as third:
                assert (await third.echo(Req(message="c"))).message == "c"
                assert limiter.connections.connections == 1
            assert limiter.connections.rejected == 1
            assert handler.callers  # the handler saw the calls (a sanity check on the set-up)
    finally:
        metrics.set_default_recorder(previous)


async def test_a_freed_slot_is_reused_while_another_connection_stays_open() -> None:
    async with serve(server.with_limit(max_connections=2)) as (svr, _):
        limiter: Any = svr.limiter
        held = [await open_raw(svr.address) for _ in range(2)]
        async with connect(svr.address) as cli:  # the third: its call fails, nothing is answered
            try:
                await cli.echo(Req(message="x"))
            except Exception as exc:
                rejected_error: Exception | None = exc
            else:
                rejected_error = None
        assert rejected_error is not None
        assert limiter.connections.rejected == 1

        # one held connection ends: the client half-closes and waits for the server's close, which
        # comes after the server released the slot
        reader, writer = held.pop(0)
        writer.write_eof()
        assert await read_to_eof(reader) == b""
        writer.close()
        assert limiter.connections.connections == 1

        async with connect(svr.address) as cli:
            assert (await cli.echo(Req(message="again"))).message == "again"
        assert limiter.connections.rejected == 1
        for _, w in held:
            w.close()


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


async def test_a_connection_handed_to_http2_stays_counted_until_it_closes() -> None:
    async with serve(server.with_limit(max_connections=1)) as (svr, _):
        limiter: Any = svr.limiter
        conns = watch_connections(svr)
        h2_reader, h2_writer = await open_raw(svr.address)
        h2_writer.write(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # the preface + empty SETTINGS
        # accepted and counted, then detected as HTTP/2 and handed to the h2 transport (it leaves the set)
        await conns.until(lambda n: n == 0 and limiter.connections.connections == 1)

        reader, writer = await open_raw(svr.address)
        assert await read_to_eof(reader) == b""  # over the limit while the HTTP/2 connection lives
        writer.close()
        assert limiter.connections.rejected == 1

        h2_writer.write_eof()
        await read_to_eof(h2_reader)  # whatever the h2 side sent (SETTINGS, GOAWAY), then its close
        h2_writer.close()
        assert limiter.connections.connections == 0
        async with connect(svr.address) as cli:
            assert (await cli.echo(Req(message="after"))).message == "after"
