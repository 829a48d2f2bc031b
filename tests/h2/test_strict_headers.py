"""RFC 9113 §8.1.1 over real sockets: a malformed header block resets that stream with PROTOCOL_ERROR and
the same connection carries the next call, on the ``GRPC_H2`` server (raw h2 client) and on the h2
client (raw h2 server). The cases themselves are tests/protocol/test_h2_validate.py's."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from kitex_grpc import errors
from kitex_grpc.protocol.h2_limits import FloodLimits
from kitex_grpc.status import StatusCode
from kitex_grpc.transport.h2.config import SERVER_TUNING
from tests.h2.helpers import RawH2, grpc_frame, h2_client, h2_server
from tests.h2.test_bad_input import GOOD, assert_still_serving
from tests.h2.test_limits import CALM, goaway, has_goaway
from tests.protocol.test_h2_validate import BAD_REQUESTS, BAD_RESPONSES, BAD_TRAILERS
from tests.support import Reply, Req

PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR


def path_of(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # RawH2's requests go to the echo service's Unary method.
    return [(n, b"/echo.v1.Echo/Unary") if n == b":path" and v else (n, v) for n, v in headers]


def raw_resets(raw: RawH2, sid: int) -> list[int]:
    return [e.error_code for e in raw.events if isinstance(e, h2.events.StreamReset) and e.stream_id == sid]


def data_frame(sid: int, payload: bytes, *, end_stream: bool) -> bytes:
    """A DATA frame written past the raw client's own state (RFC 9113 §6.1)."""
    flags = 0x1 if end_stream else 0x0
    return len(payload).to_bytes(3, "big") + bytes([0x0, flags]) + sid.to_bytes(4, "big") + payload


@pytest.mark.timeout(30)
async def test_a_request_refused_at_its_headers_still_has_its_body_checked() -> None:
    # h2spec 8.1.2.6/1: content-length 1, then 4 bytes of DATA, read after the server refused the
    # request (not gRPC: 415). The DATA still ends in PROTOCOL_ERROR (RFC 9113 §8.1.1), not in the
    # STREAM_CLOSED of a stream already reset; the reset that tells a client to stop waits for its DATA.
    async with h2_server() as (svr, svc, _t):
        raw = await RawH2.open(svr.address)
        sid = raw.request(path="/", content_type=b"text/plain", content_length=b"4")
        await raw.flush()
        await raw.until(lambda _: raw.ended(sid))
        assert raw.headers(sid)[b":status"] == b"415" and raw_resets(raw, sid) == []
        # as long as it said, more to come: now the client is told to stop (NO_ERROR)
        await raw.write_raw(data_frame(sid, b"test", end_stream=False))
        await raw.until(lambda _: bool(raw_resets(raw, sid)) or raw.closed)
        assert raw_resets(raw, sid) == [h2.errors.ErrorCodes.NO_ERROR] and not raw.closed

        bad = raw.request(path="/", content_type=b"text/plain", content_length=b"1")
        await raw.flush()
        await raw.until(lambda _: raw.ended(bad))
        assert raw_resets(raw, bad) == []
        await raw.write_raw(data_frame(bad, b"test", end_stream=True))  # longer than it said: malformed
        await raw.until(lambda _: has_goaway(raw.events) or bool(raw_resets(raw, bad)) or raw.closed)
        ended = goaway(raw.events)
        assert (raw_resets(raw, bad) or [ended.error_code if ended else None]) == [PROTOCOL_ERROR]
        assert svc.calls == 0
        raw.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("with_body", [False, True], ids=["headers-only", "with-body"])
async def test_server_resets_each_malformed_request_and_keeps_the_connection(with_body: bool) -> None:
    async with h2_server() as (svr, svc, _t):
        raw = await RawH2.open(svr.address)
        for case, headers in BAD_REQUESTS.items():
            sid = int(raw.conn.get_next_available_stream_id())
            raw.conn.send_headers(sid, path_of(headers), end_stream=not with_body)
            if with_body:  # a client that goes on sending: its DATA is dropped, the connection lives
                raw.conn.send_data(sid, GOOD, end_stream=True)
            await raw.flush()
            await raw.until(lambda _, sid=sid: raw.ended(sid))
            assert raw_resets(raw, sid) == [PROTOCOL_ERROR], case
            assert not raw.headers(sid) and not raw.closed, case
        assert svc.calls == 0
        await assert_still_serving(svr.address, raw)
        raw.close()


async def test_a_flood_of_malformed_requests_spends_the_reset_budget() -> None:
    # Each malformed request costs a reset, as a refused stream does (rapid reset, CVE-2023-44487):
    # past the burst the connection ends with GOAWAY ENHANCE_YOUR_CALM, the server serves on.
    tuning = dataclasses.replace(SERVER_TUNING, flood=FloodLimits(reset_rate=1, reset_burst=20))
    async with h2_server(tuning=tuning) as (svr, svc, _t):
        raw = await RawH2.open(svr.address)
        for _ in range(50):
            raw.conn.send_headers(raw.conn.get_next_available_stream_id(), BAD_REQUESTS["connection"], True)
        with contextlib.suppress(ConnectionError):
            await raw.flush()
            await raw.until(has_goaway)
        events = raw.events
        end = goaway(events)
        assert end is not None and (end.error_code, end.additional_data) == (CALM, b"too_many_resets")
        assert len([e for e in events if isinstance(e, h2.events.StreamReset)]) <= 20
        assert svc.calls == 0
        raw.close()
        await assert_still_serving(svr.address)


# --- the h2 client against a raw server that answers as told ----------------------------------------


class RawServer:
    """An h2 server (validation off) answering the n-th request with the n-th planned answer: a list of
    (header block, end_stream) sent in order, with a gRPC message after a block that does not end."""

    def __init__(self) -> None:
        self.plans: list[list[tuple[list[tuple[bytes, bytes]], bool]]] = []
        self.connections = 0
        self.resets: list[tuple[int, int]] = []
        self._handlers: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False, header_encoding=None, validate_outbound_headers=False,
                normalize_outbound_headers=False, validate_inbound_headers=False,
            )
        )  # fmt: skip
        conn.initiate_connection()
        try:
            while True:
                writer.write(conn.data_to_send())
                await writer.drain()
                data = await reader.read(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.StreamEnded):
                        self._answer(conn, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset):
                        self.resets.append((ev.stream_id, ev.error_code))
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        finally:
            writer.close()

    def _answer(self, conn: h2.connection.H2Connection, sid: int) -> None:
        for block, end in self.plans.pop(0):
            conn.send_headers(sid, block, end_stream=end)
            if not end:
                conn.send_data(sid, grpc_frame(Reply(message="raw").SerializeToString()))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.close()
            for task in self._handlers:  # each ends when its socket does
                task.cancel()
            await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 5)
            await server.wait_closed()


GOOD_RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
GOOD_TRAILERS = [(b"grpc-status", b"0")]
GOOD_ANSWER = [(GOOD_RESPONSE, False), (GOOD_TRAILERS, True)]


def bad_answers() -> dict[str, list[tuple[list[tuple[bytes, bytes]], bool]]]:
    # A malformed response is all the server sends (its stream stays open for the client's reset).
    answers = {f"response-{c}": [(h, False)] for c, h in BAD_RESPONSES.items()}
    answers |= {f"trailers-{c}": [(GOOD_RESPONSE, False), (h, True)] for c, h in BAD_TRAILERS.items()}
    return answers


@pytest.mark.timeout(30)
async def test_client_fails_each_malformed_response_and_keeps_the_connection() -> None:
    raw = RawServer()
    async with raw.running() as address:
        cli = h2_client(address)
        try:
            raw.plans.append(GOOD_ANSWER)
            assert (await cli.Unary(Req(message="a"))).message == "raw"
            for case, answer in bad_answers().items():
                raw.plans.append(answer)
                with pytest.raises(errors.KitexError) as caught:
                    await asyncio.wait_for(cli.Unary(Req(message="a")), 5)
                assert caught.value.grpc_status == StatusCode.INTERNAL, case
                assert "PROTOCOL_ERROR" in str(caught.value), case
                raw.plans.append(GOOD_ANSWER)  # the same connection serves the next call
                assert (await cli.Unary(Req(message="a"))).message == "raw", case
        finally:
            await cli.close()
    assert raw.connections == 1
    # Each malformed response's stream was reset with PROTOCOL_ERROR (trailers close theirs: no reset).
    assert [code for _, code in raw.resets] == [PROTOCOL_ERROR] * len(BAD_RESPONSES)
