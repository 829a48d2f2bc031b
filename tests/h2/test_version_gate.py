"""The h2 version gate of kitex_grpc.protocol.h2_patched: the overrides of h2's internals run only on the
h2 versions they were tested on; outside them the cores get a plain subclass, said once in the log, and
still serve real calls over 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import h2
import h2.events
import pytest

from kitex_grpc.protocol import h2_patched
from kitex_grpc.protocol.h2_patched import GrpcH2Connection, PatchedH2Connection
from tests.h2.helpers import RawH2, h2_client, h2_server, transport_of
from tests.h2.test_limits import CALM, goaway, has_goaway, ping
from tests.support import Req

LOGGER = "kitex_grpc.protocol.h2"


def test_the_installed_h2_is_one_the_overrides_were_tested_on() -> None:
    # The locked h2 and pyproject's lower bound (the lowest-direct venv) are both inside TESTED_H2: a
    # lock or bound moved outside it fails here, before the suite silently runs the fallback.
    assert h2_patched.H2_CONNECTION_CLASS is PatchedH2Connection


@pytest.mark.parametrize(
    ("version", "patched"),
    [
        ("4.4.0", True),
        ("4.4.1", True),
        ("4.9.0", True),
        ("4.3.1", False),  # its header blocks differ from our send path's
        ("4.1.0", False),  # no keyword event constructors
        ("5.0.0", False),
        ("3.2.0", False),
        ("not-a-version", False),
    ],
)
def test_the_tested_range_picks_the_class(
    version: str, patched: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h2_patched, "_warned", True)  # the log is the next test's subject
    expected = PatchedH2Connection if patched else GrpcH2Connection
    assert h2_patched.connection_class(version) is expected


def test_outside_the_range_falls_back_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(h2_patched, "_warned", False)
    monkeypatch.setattr(h2, "__version__", "4.1.0")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert h2_patched.connection_class() is GrpcH2Connection
        assert h2_patched.connection_class() is GrpcH2Connection
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert "h2 4.1.0 is outside" in records[0].getMessage()
    assert "4.4 <= h2 < 5.0" in records[0].getMessage()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        monkeypatch.setattr(h2, "__version__", "4.4.1")
        assert h2_patched.connection_class() is PatchedH2Connection
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every core built during the test uses the plain subclass, as on an untested h2."""
    monkeypatch.setattr(h2_patched, "H2_CONNECTION_CLASS", GrpcH2Connection)


@pytest.mark.usefixtures("fallback")
async def test_the_fallback_serves_unary_streaming_and_flow_controlled_calls() -> None:
    async with h2_server() as (svr, _, srv_transport):
        cli = h2_client(svr.address)
        try:
            replies = await asyncio.wait_for(asyncio.gather(*(cli.Unary(Req(seq=i)) for i in range(20))), 10)
            assert [r.seq for r in replies] == list(range(20))
            big = "x" * 300_000  # over the 64 KiB windows: WINDOW_UPDATEs both ways
            assert (await asyncio.wait_for(cli.Unary(Req(message=big, seq=99)), 10)).message == big
            bidi = await cli.Bidi()
            for i in range(3):
                await bidi.send(Req(seq=i))
                assert (await asyncio.wait_for(bidi.recv(), 5)).seq == i
            await bidi.close_send()
            conn = next(iter(transport_of(cli).connections.values()))
            assert type(conn.core._conn) is GrpcH2Connection
            assert [type(c.core._conn) for c in srv_transport.connections] == [GrpcH2Connection]
        finally:
            await cli.close()


@pytest.mark.usefixtures("fallback")
async def test_the_fallback_keeps_the_ping_flood_guard() -> None:
    async with h2_server() as (svr, _, _t):
        raw = await RawH2.open(svr.address)
        await raw.write_raw(b"".join(ping(i) for i in range(1_000)))
        await raw.until(has_goaway, seconds=5)
        end = goaway(raw.events)
        assert end is not None and end.error_code == CALM and end.additional_data == b"too_many_pings"
        raw.close()


@pytest.mark.usefixtures("fallback")
async def test_the_fallback_ends_a_connection_its_peer_sent_goaway_on() -> None:
    # Plain h2 closes its state machine on any GOAWAY: the fallback cannot drain, so the connection
    # ends. Were it kept as draining, the server's own drain would PING a closed h2 and stop() raise.
    async with h2_server() as (svr, _, srv_transport):
        raw = await RawH2.open(svr.address)
        await raw.until(lambda events: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events))
        (conn,) = srv_transport.connections
        raw.conn.close_connection()  # GOAWAY(NO_ERROR)
        await raw.flush()
        await raw.until(lambda _events: False, seconds=5)  # returns when the server closes the socket
        assert raw.closed
        raw.close()
        await asyncio.wait_for(conn.done, 5)
        assert srv_transport.connections == set()
