"""Hostile HTTP/2 against the h2 server (issue 23, findings 1-5; issue 22 item 4): raw frames over real
sockets, each attack bounded in time, each answered by its limit while other calls go on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import TransportProtocol, server
from kitex_grpc.protocol.h2_limits import FloodLimits
from kitex_grpc.transport.h2.config import SERVER_TUNING
from kitex_grpc.transport.h2.server_conn import ServerConnection
from tests.h2.helpers import RawH2, grpc_frame, h2_client, h2_server, until_gone
from tests.support import EchoService, Req, serve

GOOD = grpc_frame(Req(message="fine").SerializeToString())
CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


def ping(i: int) -> bytes:
    return frame(0x6, 0, 0, i.to_bytes(8, "big"))


def goaway(events: list[h2.events.Event]) -> h2.events.ConnectionTerminated | None:
    return next((e for e in events if isinstance(e, h2.events.ConnectionTerminated)), None)


def has_goaway(events: list[h2.events.Event]) -> bool:
    return goaway(events) is not None


def unlimited(raw: RawH2) -> None:
    """Let the raw client open streams past the server's MAX_CONCURRENT_STREAMS."""
    raw.conn.remote_settings.max_concurrent_streams = 2**31 - 1
    raw.conn.remote_settings.acknowledge()


async def unary_ok(address: str) -> None:
    cli = h2_client(address)
    try:
        assert (await asyncio.wait_for(cli.Unary(Req(message="ok")), 5)).message == "ok"
    finally:
        await cli.close()


async def finish(raw: RawH2, sid: int) -> None:
    raw.conn.send_data(sid, GOOD, end_stream=True)
    await raw.flush()
    await raw.until(lambda _: raw.ended(sid))
    assert raw.headers(sid)[b"grpc-status"] == b"0"


async def read_until_eof(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent until it closed (a close with our bytes unread arrives as a reset)."""
    data = bytearray()
    async with asyncio.timeout(seconds):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return bytes(data)


def calmed(caplog: pytest.LogCaptureFixture, reason: str) -> bool:
    """The server logged closing a connection with ENHANCE_YOUR_CALM for ``reason``."""
    return any("ENHANCE_YOUR_CALM: " + reason in r.getMessage() for r in caplog.records)


# -- finding 5 / issue 22 item 4: stream limits -----------------------------------------------------------


def test_server_defaults_are_finite() -> None:
    assert SERVER_TUNING.max_concurrent_streams == 100
    assert SERVER_TUNING.max_header_list_size == 16 * 1024
    assert SERVER_TUNING.handshake_timeout == 5.0 and SERVER_TUNING.idle_timeout == 600.0


async def test_grpcio_server_advertises_the_same_finite_stream_limit() -> None:
    async with serve(server.with_transport_protocol(TransportProtocol.GRPC)) as (svr, _):
        raw = await RawH2.open(svr.address)
        await raw.until(lambda evs: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in evs))
        assert raw.conn.remote_settings.max_concurrent_streams == SERVER_TUNING.max_concurrent_streams == 100
        raw.close()


async def test_stream_over_the_limit_is_refused_alone() -> None:
    async with h2_server(server.with_grpc_max_concurrent_streams(2)) as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        # Sent before the server's SETTINGS are read, so the raw client does not hold itself back.
        first, second, third = raw.request(), raw.request(), raw.request()
        await raw.flush()
        await raw.until(lambda _: raw.ended(third))
        resets = [e for e in raw.events if isinstance(e, h2.events.StreamReset)]
        assert [(r.stream_id, r.error_code) for r in resets] == [(third, h2.errors.ErrorCodes.REFUSED_STREAM)]
        assert not has_goaway(raw.events) and not raw.closed
        # The two streams in flight and a new one are served on the same connection.
        await finish(raw, first)
        await finish(raw, second)
        await finish(raw, raw.request())
        raw.close()


async def test_refused_streams_are_logged_a_few_lines_a_second(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kitex_grpc.transport.h2")
    async with h2_server(server.with_grpc_max_concurrent_streams(5)) as (svr, _, transport):
        raw = await RawH2.open(svr.address)
        sids = [raw.request() for _ in range(905)]  # 900 refused: within the reset budget (1,000)
        await raw.flush()
        await raw.until(lambda _: raw.ended(sids[-1]), seconds=20)
        refused = [e for e in raw.events if isinstance(e, h2.events.StreamReset)]
        assert len(refused) == 900
        unlimited(raw)
        # 500 requests with a bad content-type are rejected one by one: logged in aggregate too.
        bad = [raw.request(content_type=b"text/plain") for _ in range(500)]
        await raw.flush()
        await raw.until(lambda _: raw.ended(bad[-1]), seconds=20)
        transport.events.flush()
        lines = [r for r in caplog.records if r.name == "kitex_grpc.transport.h2"]
        assert 2 <= len(lines) <= 6, [r.getMessage() for r in lines]
        assert any("more in the last" in r.getMessage() for r in lines)
        raw.close()


async def test_abandoned_streams_are_released_when_the_connection_closes() -> None:
    async with h2_server() as (svr, _, transport):
        raw = await RawH2.open(svr.address)
        sids = [raw.request() for _ in range(1_000)]  # never finished
        await raw.flush()
        await raw.until(lambda _: raw.ended(sids[-1]), seconds=20)
        (conn,) = transport.connections
        assert len(conn.calls) == 100  # the default limit: the rest were refused
        raw.close()
        await asyncio.wait_for(conn.done, 5)
        assert not conn.calls and not transport.connections
        await unary_ok(svr.address)


# -- finding 1: HPACK amplification -------------------------------------------------------------------------


async def test_hpack_amplification_ends_the_connection_before_holding_it() -> None:
    # A 4,000-byte value enters the dynamic table; blocks of 1,000 one-byte references to it follow
    # (each would decode to 4 MB of header values; issue 23 finding 1).
    async with h2_server() as (svr, _, transport):
        host, port = svr.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        first = hpack.Encoder().encode(
            [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/echo.v1.Echo/Unary"),
             (b"content-type", b"application/grpc"), (b"x-b", b"v" * 4000)]
        )  # fmt: skip
        writer.write(PREFACE + EMPTY_SETTINGS + frame(0x1, 0x4, 1, first))
        # Requests (POST, http, a literal :path, content-type from the table) naming x-b 1,000 times.
        attack = b"\x83\x86\x04\x13/echo.v1.Echo/Unary\xbf" + b"\xbe" * 1000
        for i in range(40):
            writer.write(frame(0x1, 0x4, 3 + 2 * i, attack))
        await writer.drain()
        data = await read_until_eof(reader, 10)
        writer.close()
        end = goaway(_server_events(data))
        # Never lost to a reset: the server lingers, dropping our frames, until our EOF (protocol.py).
        assert end is not None and end.error_code == CALM
        await until_gone(transport)
        await unary_ok(svr.address)


async def test_headers_over_the_default_limit_reset_only_their_stream() -> None:
    async with h2_server() as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        sid = raw.request(x_big=b"v" * 17_000)
        await raw.flush()
        await raw.until(lambda _: raw.ended(sid))
        resets = [e for e in raw.events if isinstance(e, h2.events.StreamReset)]
        assert [r.stream_id for r in resets] == [sid] and not has_goaway(raw.events)
        await finish(raw, raw.request(x_fits=b"v" * 15_000))
        raw.close()


def _server_events(data: bytes) -> list[h2.events.Event]:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    try:
        return list(conn.receive_data(data))
    except h2.exceptions.ProtocolError:
        return []


# -- finding 2: handshake and idle timeouts ----------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b"PRI * HT", PREFACE])
async def test_handshake_timeout_closes_a_silent_connection(sent: bytes) -> None:
    async with h2_server(server.with_read_write_timeout(0.3)) as (svr, _, transport):
        host, port = svr.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(sent)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await read_until_eof(reader, 5)
        assert 0.25 <= loop.time() - start < 2.0
        writer.close()
        assert not transport.connections


async def test_handshake_timeout_closes_a_slow_dribble() -> None:
    async with h2_server(server.with_read_write_timeout(0.3)) as (svr, _, _t):
        host, port = svr.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        closed = asyncio.ensure_future(read_until_eof(reader, 5))
        for byte in PREFACE:  # one byte every 50 ms: the whole preface would take 1.2 s
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)
        await closed
        writer.close()


async def test_handshake_timeout_after_hand_over_on_the_ttheader_port() -> None:
    svr = echo_kitex.new_server(
        EchoService(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_transport_protocol(TransportProtocol.TTHEADER),
        server.with_read_write_timeout(0.3),
    )
    await svr.start()
    try:
        host, port = svr.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"PRI * HT")  # what the TTHeader port sniffs as HTTP/2 and hands over
        loop = asyncio.get_running_loop()
        start = loop.time()
        await read_until_eof(reader, 5)
        assert loop.time() - start < 2.0
        writer.close()
    finally:
        await svr.stop()


async def test_idle_connections_are_closed_by_the_idle_timeout() -> None:
    async with h2_server(server.with_max_conn_idle_time(0.3)) as (svr, _, transport):
        raws = [await RawH2.open(svr.address) for _ in range(50)]
        await finish(raws[0], raws[0].request())  # a connection that served a call idles too
        loop = asyncio.get_running_loop()
        start = loop.time()
        for raw in raws:
            await raw.until(lambda evs: has_goaway(evs) or False, seconds=5)
            await raw.until(lambda _: False, seconds=5)  # then EOF
            assert raw.closed
        assert loop.time() - start < 2.0
        assert all(goaway(r.events).error_code == h2.errors.ErrorCodes.NO_ERROR for r in raws)  # type: ignore[union-attr]
        assert not transport.connections


async def test_a_connection_with_a_call_in_flight_is_not_idle() -> None:
    async with h2_server(server.with_max_conn_idle_time(0.2)) as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        sid = raw.request()
        await raw.flush()
        await asyncio.sleep(0.7)  # over three idle periods with the call open
        assert not raw.closed and not has_goaway(raw.events)
        await finish(raw, sid)
        raw.close()


# -- finding 3: PING and SETTINGS floods, control replies to a client that does not read ---------------------


async def test_ping_flood_ends_in_goaway_too_many_pings() -> None:
    async with h2_server() as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        await raw.write_raw(b"".join(ping(i) for i in range(1_000)))
        loop = asyncio.get_running_loop()
        start = loop.time()
        await raw.until(has_goaway, seconds=5)
        end = goaway(raw.events)
        assert end is not None and end.error_code == CALM and end.additional_data == b"too_many_pings"
        assert loop.time() - start < 1.0
        raw.close()
        await unary_ok(svr.address)


async def test_pings_within_the_policy_are_answered() -> None:
    async with h2_server(server.with_grpc_keepalive_enforcement_policy(0, permit_without_stream=True)) as (
        svr,
        _,
        _t,
    ):
        raw = await RawH2.open(svr.address)
        await raw.write_raw(b"".join(ping(i) for i in range(20)))
        await raw.until(lambda evs: sum(isinstance(e, h2.events.PingAckReceived) for e in evs) == 20)
        assert not has_goaway(raw.events)
        await finish(raw, raw.request())
        raw.close()


async def test_a_ping_after_each_reply_on_a_long_stream_is_never_a_strike() -> None:
    # grpc-go's client sends a BDP probe after data it receives, however often: grpc-go's server forgives
    # the strikes whenever it wrote HEADERS or DATA since the previous PING, and so must ours (the
    # default policy: one PING per 5 minutes otherwise).
    async with h2_server() as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        sid = raw.request("/echo.v1.Echo/Bidi")
        for i in range(1, 11):
            raw.conn.send_data(sid, GOOD)
            await raw.flush()
            await raw.until(lambda evs, n=i: sum(isinstance(e, h2.events.DataReceived) for e in evs) >= n)
            raw.conn.ping(i.to_bytes(8, "big"))
            await raw.flush()
        await raw.until(lambda evs: sum(isinstance(e, h2.events.PingAckReceived) for e in evs) == 10)
        assert not has_goaway(raw.events)
        raw.conn.end_stream(sid)
        await raw.flush()
        await raw.until(lambda _: raw.ended(sid))
        assert raw.headers(sid)[b"grpc-status"] == b"0"
        raw.close()


async def test_a_ping_after_each_window_of_a_flow_controlled_reply_is_never_a_strike() -> None:
    # grpc-go's client sends WINDOW_UPDATE and a BDP probe after each batch of a large reply it reads
    # (grpc-go interop large_unary): the DATA the server flushes as the window opens is a write that
    # forgives the strikes (grpc-go's onEachWrite), not only the message handed to the core.
    async with h2_server() as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        raw.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 8192})
        sid = raw.request()
        body = grpc_frame(Req(message="big", payload=b"x" * 60_000).SerializeToString())
        for start in range(0, len(body), 16_384):
            raw.conn.send_data(sid, body[start : start + 16_384], end_stream=start + 16_384 >= len(body))
        await raw.flush()
        pings = 0
        seen = 0
        async with asyncio.timeout(10):
            while not raw.ended(sid) and not has_goaway(raw.events) and not raw.closed:
                before = len(raw.events)
                await raw.until(lambda evs, n=before: len(evs) > n)
                received = [e for e in raw.events[seen:] if isinstance(e, h2.events.DataReceived)]
                seen = len(raw.events)
                for event in received:
                    raw.conn.acknowledge_received_data(event.flow_controlled_length, sid)
                if received:
                    pings += 1
                    raw.conn.ping(pings.to_bytes(8, "big"))
                await raw.flush()
        assert not has_goaway(raw.events)
        assert pings >= 5  # the reply took that many windows, each followed by a PING
        assert raw.headers(sid)[b"grpc-status"] == b"0"
        raw.close()


async def test_settings_flood_ends_in_goaway() -> None:
    async with h2_server() as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        await raw.write_raw(EMPTY_SETTINGS * 1_000)
        await raw.until(has_goaway, seconds=5)
        end = goaway(raw.events)
        assert end is not None and end.error_code == CALM and end.additional_data == b"too_many_settings"
        raw.close()
        await unary_ok(svr.address)


async def test_control_replies_to_a_client_that_does_not_read_are_bounded() -> None:
    # Flood limits off (PINGs allowed at any rate): only the reply bound stands between the flood and
    # the server's write buffer.
    limits = FloodLimits(settings_rate=0, reset_rate=0)
    async with h2_server(
        server.with_grpc_keepalive_enforcement_policy(0, permit_without_stream=True),
        server.with_grpc_flood_limits(limits),
    ) as (svr, _, transport):
        host, port = svr.address.rsplit(":", 1)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, int(port)))
        chunk = b"".join(ping(i) for i in range(3_000))  # 51 KB of PINGs
        sent = 0
        await loop.sock_sendall(sock, PREFACE + EMPTY_SETTINGS)
        try:
            while sent < 64 * 1024 * 1024:  # bounded: the server stops reading long before this
                try:
                    await asyncio.wait_for(loop.sock_sendall(sock, chunk), 0.5)
                except TimeoutError:
                    break
                sent += len(chunk)
            (conn,) = transport.connections
            assert isinstance(conn, ServerConnection) and conn.transport is not None
            assert conn._reading_paused
            # Paused at 50 replies after the write buffer passed its high-water mark (64 KiB): at most
            # one read's worth of replies (64 KiB of PINGs) went on top.
            assert conn.transport.get_write_buffer_size() < 256 * 1024
        finally:
            sock.close()


# -- finding 4: rapid reset --------------------------------------------------------------------------------


async def test_rapid_reset_ends_in_goaway(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kitex_grpc.transport.h2")
    async with h2_server() as (svr, _, transport):
        raw = await RawH2.open(svr.address)
        with contextlib.suppress(ConnectionError):
            for _ in range(100):  # up to 5,000 streams opened and reset at once
                for _ in range(50):
                    raw.conn.reset_stream(raw.request(), h2.errors.ErrorCodes.CANCEL)
                await raw.flush()
                await asyncio.sleep(0)
                if all(conn.closed for conn in transport.connections):
                    break
            await raw.until(has_goaway, seconds=5)
        end = goaway(raw.events)
        assert end is None or (end.error_code == CALM and end.additional_data == b"too_many_resets")
        assert calmed(caplog, "too_many_resets") and all(conn.closed for conn in transport.connections)
        raw.close()
        await until_gone(transport)
        await unary_ok(svr.address)


async def test_streams_opened_far_past_the_limit_end_in_goaway(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kitex_grpc.transport.h2")
    async with h2_server() as (svr, _, transport):
        raw = await RawH2.open(svr.address)
        for _ in range(5_000):  # 4,900 over the limit of 100, never finished
            raw.request()
        with contextlib.suppress(ConnectionError):
            await raw.flush()
            await raw.until(has_goaway, seconds=5)
        assert calmed(caplog, "too_many_resets") and all(conn.closed for conn in transport.connections)
        raw.close()
        await until_gone(transport)
        await unary_ok(svr.address)


async def test_cancelling_within_the_reset_rate_is_fine() -> None:
    async with h2_server() as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        for _ in range(200):
            raw.conn.reset_stream(raw.request(), h2.errors.ErrorCodes.CANCEL)
        await raw.flush()
        await finish(raw, raw.request())
        assert not has_goaway(raw.events)
        raw.close()


@pytest.mark.parametrize("how", ["refused_stream", "goaway"])
async def test_client_sends_a_refused_stream_again(how: str) -> None:
    # A peer that refuses the first stream (REFUSED_STREAM, or a GOAWAY whose last stream id is below
    # it, as when the server closes an idle connection as the call goes out: never processed) and
    # serves the rest.
    served: list[int] = []
    refused = False

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal refused
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived) and not refused:
                    refused = True
                    if how == "goaway":
                        conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=0)
                        writer.write(conn.data_to_send())
                        writer.close()
                        return
                    conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                elif isinstance(ev, h2.events.RequestReceived):
                    served.append(ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in served:
                    sid = ev.stream_id
                    conn.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
                    conn.send_data(sid, grpc_frame(Req(message="again").SerializeToString()))
                    conn.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
            writer.write(conn.data_to_send())
        writer.close()

    listener = await asyncio.start_server(peer, "127.0.0.1", 0)
    cli = h2_client(f"127.0.0.1:{listener.sockets[0].getsockname()[1]}")
    try:
        assert (await asyncio.wait_for(cli.Unary(Req(message="x")), 5)).message == "again"
        assert served == ([3] if how == "refused_stream" else [1])
    finally:
        await cli.close()
        listener.close()
