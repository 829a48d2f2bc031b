"""h2 client connections: multiplexing, stream limits, reuse, reconnect, dial, TLS, keepalive, one-way."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from pathlib import Path

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import client, new_client, server
from kitex_grpc.errors import GetConnectionError, RemoteOrNetworkError
from kitex_grpc.serviceinfo import MethodInfo, ServiceInfo, StreamingMode
from kitex_grpc.status import StatusCode
from kitex_grpc.transport.h2.config import H2Tuning
from tests.h2.helpers import H2, RawH2, grpc_frame, h2_client, h2_server, make_cert, transport_of
from tests.support import EchoService, Reply, Req, wait_for


async def test_concurrent_calls_share_one_connection() -> None:
    async with h2_server() as (svr, _, srv_transport):
        cli = h2_client(svr.address)
        try:
            replies = await asyncio.gather(*(cli.Unary(Req(seq=i)) for i in range(200)))
            assert [r.seq for r in replies] == list(range(200))
            bidi = await cli.Bidi()
            await bidi.send(Req(seq=1))
            assert (await bidi.recv()).seq == 1
            await bidi.close_send()
            assert len(transport_of(cli).connections) == 1
            assert len(srv_transport.connections) == 1
        finally:
            await cli.close()


async def test_peer_max_concurrent_streams_queues_calls() -> None:
    svc = EchoService()
    async with h2_server(handler=svc, tuning=H2Tuning(max_concurrent_streams=2)) as (svr, _, _t):
        cli = h2_client(svr.address)
        try:
            calls = [asyncio.create_task(cli.Unary(Req(message="gate", seq=i))) for i in range(10)]
            await svc.arrived(2)
            conn = next(iter(transport_of(cli).connections.values()))
            assert svc.calls == 2 and len(conn.calls) == 2
            assert len(conn._stream_waiters) == 8  # queued, not sent: the server allows 2
            svc.release.set()
            replies = await asyncio.wait_for(asyncio.gather(*calls), 10)
            assert sorted(r.seq for r in replies) == list(range(10))
            assert svc.calls == 10 and len(transport_of(cli).connections) == 1
        finally:
            await cli.close()


async def test_broken_connection_fails_calls_and_next_call_redials() -> None:
    svc = EchoService()
    async with h2_server(handler=svc) as (svr, _, srv_transport):
        cli = h2_client(svr.address)
        try:
            assert (await cli.Unary(Req(message="a"))).message == "a"
            first = next(iter(transport_of(cli).connections.values()))
            blocked = asyncio.create_task(cli.Unary(Req(message="block")))
            await wait_for(svc.entered)
            for conn in list(srv_transport.connections):
                assert conn.transport is not None
                conn.transport.abort()  # the network drops the connection
            with pytest.raises(RemoteOrNetworkError) as info:
                await asyncio.wait_for(blocked, 5)
            assert info.value.grpc_status is StatusCode.UNAVAILABLE
            assert (await cli.Unary(Req(message="b"))).message == "b"
            assert next(iter(transport_of(cli).connections.values())) is not first
        finally:
            await cli.close()


async def test_dial_refused_and_dial_timeout_are_get_connection_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = h2_client(f"127.0.0.1:{port}")
    with pytest.raises(GetConnectionError, match="dial"):
        await cli.Unary(Req())
    await cli.close()

    # A listener that accepts but never speaks HTTP/2: the dial waits for SETTINGS, then times out.
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    address = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    cli = h2_client(address, client.with_connect_timeout(0.2))
    try:
        with pytest.raises(GetConnectionError, match="timed out after 200ms"):
            await cli.Unary(Req())
    finally:
        await cli.close()
        silent.close()


async def test_tls_with_alpn_h2(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    async with h2_server(server.with_tls(cert, key)) as (svr, _, _t):
        address = "localhost:" + svr.address.rsplit(":", 1)[1]
        tls = client.with_tls(root_certificates=cert, server_hostname="localhost")
        cli = h2_client(address, tls, client.with_connect_timeout(5))
        try:
            assert (await cli.Unary(Req(message="secure"))).message == "secure"
            assert [r.seq async for r in cli.ServerStream(Req(seq=3))] == [0, 1, 2]
            conn = next(iter(transport_of(cli).connections.values()))
            assert conn.transport is not None
            assert conn.transport.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        finally:
            await cli.close()
        # grpc.aio's client over TLS reaches our server too (ALPN h2 on both sides).
        from gen.echo.v1 import echo_kitex

        grpc_cli = echo_kitex.new_client(
            "echo", client.with_host_ports(address), tls, client.with_connect_timeout(5)
        )
        try:
            assert (await grpc_cli.Unary(Req(message="grpcio"))).message == "grpcio"
        finally:
            await grpc_cli.close()


async def test_client_keepalive_ping_timeout_fails_calls() -> None:
    """A peer that sends SETTINGS and then stops answering: the PING times out, calls fail UNAVAILABLE."""
    settings_frame = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    writers: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(settings_frame)
        while await reader.read(65536):
            pass

    peer = await asyncio.start_server(mute, "127.0.0.1", 0)
    address = f"127.0.0.1:{peer.sockets[0].getsockname()[1]}"
    cli = h2_client(address, tuning=H2Tuning(keepalive_time=0.05, keepalive_timeout=0.2))
    try:
        with pytest.raises(RemoteOrNetworkError, match="keepalive") as info:
            await asyncio.wait_for(cli.Unary(Req()), 5)
        assert info.value.grpc_status is StatusCode.UNAVAILABLE
    finally:
        await cli.close()
        for w in writers:
            w.close()
        peer.close()


async def test_server_keepalive_closes_a_silent_client() -> None:
    async with h2_server(tuning=H2Tuning(keepalive_time=0.05, keepalive_timeout=0.2)) as (svr, _, _t):
        host, port = svr.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        async with asyncio.timeout(5):
            while await reader.read(65536):  # SETTINGS, PING ... then EOF when the server gives up
                pass
        writer.close()
        # and it still serves others
        cli = h2_client(svr.address)
        try:
            assert (await cli.Unary(Req(message="ok"))).message == "ok"
        finally:
            await cli.close()


async def test_one_way_returns_once_written_and_server_runs_the_handler() -> None:
    svc = EchoService()
    oneway = ServiceInfo(
        "Echo",
        (MethodInfo("Unary", StreamingMode.UNARY, Req, Req, oneway=True),),
        package_name="echo.v1",
    )
    async with h2_server(handler=svc) as (svr, _, _t):
        cli = new_client(
            oneway, "echo", client.with_host_ports(svr.address), client.with_transport_protocol(H2)
        )
        try:
            # The handler waits on a gate: a one-way call must not wait for it.
            assert await asyncio.wait_for(cli.call("Unary", Req(message="gate")), 5) is None
            await svc.arrived(1)
            assert svc.finished == 0
            svc.release.set()
            assert await cli.call("Unary", Req(message="second")) is None
            await svc.arrived(2)
            assert not svc.cancelled.is_set()
        finally:
            await cli.close()


async def test_status_message_with_surrounding_whitespace_from_grpc_aio() -> None:
    """grpc.aio sends grpc-message values with a trailing space as they are; that is a status, not a
    broken connection (h2's strict field checks would call it malformed)."""
    from kitex_grpc import TransportProtocol
    from kitex_grpc.errors import StatusError
    from tests.support import serve

    class Padded(EchoService):
        async def Unary(self, request: Req) -> Req:
            raise StatusError(StatusCode.NOT_FOUND, " padded ")

    async with serve(server.with_transport_protocol(TransportProtocol.GRPC), handler=Padded()) as (svr, _):
        cli = h2_client(svr.address)
        try:
            with pytest.raises(RemoteOrNetworkError) as info:
                await cli.Unary(Req())
            assert info.value.grpc_status is StatusCode.NOT_FOUND and info.value.detail == " padded "
            assert (await cli.ServerStream(Req(seq=1)).recv()).seq == 0  # same connection, still fine
            assert len(transport_of(cli).connections) == 1
        finally:
            await cli.close()


class _Held(echo_kitex.EchoHandler):
    """Unary calls that wait for ``release`` once ``count`` of them are in."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.entered = 0
        self.all_in = asyncio.Event()
        self.release = asyncio.Event()

    async def Unary(self, request: Req) -> Reply:
        self.entered += 1
        if self.entered == self.count:
            self.all_in.set()
        await self.release.wait()
        return Reply(message=request.message)


async def test_replies_after_the_peer_reset_are_dropped_without_asyncio_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Handlers finishing after the client reset the connection (ghz closes its connection with 50 calls
    in flight) must not write into the dead transport: asyncio logs "socket.send() raised exception."
    for every write after the fifth once a send failed, before connection_lost runs."""
    handler = _Held(12)
    async with h2_server(handler=handler) as (svr, _, transport):
        raw = await RawH2.open(svr.address)
        for _ in range(handler.count):
            sid = raw.request()
            raw.conn.send_data(sid, grpc_frame(Req(message="x").SerializeToString()), end_stream=True)
        await raw.flush()
        await wait_for(handler.all_in)
        (conn,) = transport.connections
        sock = raw.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.writer.transport.abort()  # an RST: the socket closes in the next loop turn
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            handler.release.set()  # the handlers reply in that same turn, after the RST
            await asyncio.wait_for(asyncio.shield(conn.done), 5)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


class _CountingTransport:
    """The server connection's real transport, counting the writes made through it."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self.inner = inner
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.inner.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_replies_finishing_in_one_loop_turn_share_one_write_after_the_first() -> None:
    """The first reply of a loop turn is written at once; the replies of the other calls that finish in
    the same turn go out together at its end: two socket writes for twelve replies, not twelve."""
    handler = _Held(12)
    async with h2_server(handler=handler) as (svr, _, transport):
        raw = await RawH2.open(svr.address)
        sids = []
        for _ in range(handler.count):
            sid = raw.request()
            raw.conn.send_data(sid, grpc_frame(Req(message="x").SerializeToString()), end_stream=True)
            sids.append(sid)
        await raw.flush()
        await wait_for(handler.all_in)
        (conn,) = transport.connections
        counting = _CountingTransport(conn.transport)
        conn.transport = counting  # type: ignore[assignment]
        handler.release.set()  # all twelve handlers return in the next loop turn
        await raw.until(lambda _: all(raw.ended(sid) for sid in sids))
        assert [raw.headers(sid).get(b"grpc-status") for sid in sids] == [b"0"] * handler.count
        assert counting.writes == 2
        raw.close()
