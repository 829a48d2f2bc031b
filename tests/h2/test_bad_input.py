"""Bad input from a raw h2 peer: each case gets its gRPC status or a connection error, and the server
keeps serving every other call (on the same connection when the error is per call)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import h2.errors
import h2.events
import pytest

from kitex_grpc import server
from kitex_grpc.transport.h2.config import H2Tuning
from tests.h2.helpers import RawH2, grpc_frame, h2_client, h2_server
from tests.support import EchoService, Req, wait_for

GOOD = grpc_frame(Req(message="fine").SerializeToString())


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, EchoService]]:
    async with h2_server(server.with_max_message_size(1024)) as (svr, svc, _t):
        yield svr.address, svc


async def assert_still_serving(address: str, raw: RawH2 | None = None) -> None:
    """A normal call works on a fresh client, and on ``raw``'s connection when given."""
    cli = h2_client(address)
    try:
        assert (await cli.Unary(Req(message="ok"))).message == "ok"
    finally:
        await cli.close()
    if raw is not None:
        sid = raw.request()
        raw.conn.send_data(sid, GOOD, end_stream=True)
        await raw.flush()
        await raw.until(lambda _: raw.ended(sid))
        assert raw.headers(sid)[b"grpc-status"] == b"0"


async def unary_status(raw: RawH2, data: bytes, **headers: bytes) -> dict[bytes, bytes]:
    path = headers.pop("path", b"/echo.v1.Echo/Unary").decode()
    content_type = headers.pop("content_type", b"application/grpc")
    sid = raw.request(path, content_type, **headers)
    raw.conn.send_data(sid, data, end_stream=True)
    await raw.flush()
    await raw.until(lambda _: raw.ended(sid))
    return raw.headers(sid)


async def test_malformed_frame_is_a_connection_error(echo: tuple[str, EchoService]) -> None:
    address, _ = echo
    raw = await RawH2.open(address)
    await raw.write_raw(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00X")  # DATA on stream 0 (RFC 9113 §6.1)
    events = await raw.until(lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs))
    goaway = next(e for e in events if isinstance(e, h2.events.ConnectionTerminated))
    assert goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    raw.close()
    await assert_still_serving(address)


async def test_bad_length_prefix_flag_is_internal(echo: tuple[str, EchoService]) -> None:
    address, _ = echo
    raw = await RawH2.open(address)
    headers = await unary_status(raw, grpc_frame(b"abc", flag=7))
    assert headers[b"grpc-status"] == b"13"
    await assert_still_serving(address, raw)
    raw.close()


async def test_message_larger_than_allowed_is_resource_exhausted(echo: tuple[str, EchoService]) -> None:
    address, svc = echo
    raw = await RawH2.open(address)
    # Only the prefix is sent: the server refuses on the declared length, before buffering a body.
    headers = await unary_status(raw, grpc_frame(b"", length=1024 * 1024))
    assert headers[b"grpc-status"] == b"8"
    assert svc.calls == 0
    await assert_still_serving(address, raw)
    raw.close()


async def test_wrong_content_type_is_rejected(echo: tuple[str, EchoService]) -> None:
    address, _ = echo
    raw = await RawH2.open(address)
    headers = await unary_status(raw, GOOD, content_type=b"application/json")
    # gRPC PROTOCOL-HTTP2.md: a non-gRPC content-type gets HTTP 415.
    assert headers[b":status"] == b"415" and headers[b"grpc-status"] != b"0"
    await assert_still_serving(address, raw)
    raw.close()


@pytest.mark.parametrize("path", [b"/echo.v1.Echo/Nope", b"/no.such.Service/Unary", b"garbage"])
async def test_unknown_service_or_method_is_unimplemented(echo: tuple[str, EchoService], path: bytes) -> None:
    address, _ = echo
    raw = await RawH2.open(address)
    headers = await unary_status(raw, GOOD, path=path)
    assert headers[b"grpc-status"] == b"12"
    await assert_still_serving(address, raw)
    raw.close()


async def test_headers_over_the_limit_reset_only_their_stream() -> None:
    # 20 KB of headers against an 8 KiB SETTINGS_MAX_HEADER_LIST_SIZE: that stream is reset with
    # FRAME_SIZE_ERROR (grpc-go's answer), and the same connection serves the next call.
    async with h2_server(tuning=H2Tuning(max_header_list_size=8192)) as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        sid = raw.request(x_big=b"v" * 20_000)
        raw.conn.send_data(sid, GOOD, end_stream=True)
        await raw.flush()
        await raw.until(lambda _: raw.ended(sid))
        resets = [e for e in raw.events if isinstance(e, h2.events.StreamReset) and e.stream_id == sid]
        assert [r.error_code for r in resets] == [h2.errors.ErrorCodes.FRAME_SIZE_ERROR]
        assert not raw.headers(sid) and not raw.closed
        await assert_still_serving(svr.address, raw)
        raw.close()


async def test_headers_far_over_the_limit_end_the_connection() -> None:
    # Past twice the limit plus 64 KiB a header list is not held in memory at all: GOAWAY.
    async with h2_server(tuning=H2Tuning(max_header_list_size=8192)) as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        sid = raw.request(**{f"x_big_{i}": b"v" * 16_000 for i in range(6)})
        raw.conn.send_data(sid, GOOD, end_stream=True)
        await raw.flush()
        events = await raw.until(lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs))
        goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        assert goaway and goaway[0].error_code != h2.errors.ErrorCodes.NO_ERROR
        assert not any(isinstance(e, h2.events.ResponseReceived) for e in events)
        raw.close()
        await assert_still_serving(svr.address)


async def test_peer_disappearing_mid_stream_cancels_its_handler(echo: tuple[str, EchoService]) -> None:
    address, svc = echo
    raw = await RawH2.open(address)
    sid = raw.request("/echo.v1.Echo/Bidi")
    raw.conn.send_data(sid, grpc_frame(Req(message="block").SerializeToString()))
    await raw.flush()
    await wait_for(svc.entered)
    raw.writer.transport.abort()  # gone, mid-stream, without GOAWAY or RST_STREAM
    await wait_for(svc.cancelled)
    await assert_still_serving(address)


async def test_garbage_instead_of_preface_closes_the_connection(echo: tuple[str, EchoService]) -> None:
    address, _ = echo
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        while await reader.read(65536):
            pass
    writer.close()
    await assert_still_serving(address)
