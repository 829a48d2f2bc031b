"""Our h2 client's BDP PINGs against grpc-go's interop server (grpc-go v1.71.1, interop/grpc/).

grpc-go's server counts a PING that comes sooner than 5 minutes after the previous one as a strike,
unless it wrote HEADERS or DATA since (http2_server.go ``handlePing``, ``resetPingStrikes``). A BDP
PING follows DATA the server wrote, so it is never a strike: with a sample after every ACK (grpc-go's
own client pace, faster than Kitex's one per second) the connection must stay up while the client's
windows grow. The other direction, grpc-go's client probing our server, runs in
test_grpc_go_client.py (grpc-go's client estimates BDP by default) and tests/h2/test_limits.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from kitex_grpc import TransportProtocol, client
from kitex_grpc.protocol.h2_bdp import BDP_LIMIT, BdpConfig
from kitex_grpc.transport.h2 import config as h2_config
from kitex_grpc.transport.h2.client import H2ClientTransport
from tests.interop.grpc_cases import output_request
from tests.interop.grpc_peer import build_grpc_binaries, grpc_go_server
from tests.interop.grpc_testservice import test_kitex, test_pb2
from tests.support import NOT_ABOUT_DIALING

pytestmark = pytest.mark.interop

CHUNK = 64 * 1024
COUNT = 256  # 16 MiB from grpc-go's server


@pytest.fixture(scope="module")
def grpc_go_address() -> Iterator[str]:
    bin_dir: Path = build_grpc_binaries()
    with grpc_go_server(bin_dir) as address:
        yield address


async def test_our_bdp_pings_are_not_goawayed_by_grpc_go(grpc_go_address: str) -> None:
    saved = h2_config.CLIENT_TUNING
    h2_config.CLIENT_TUNING = dataclasses.replace(
        saved, stream_window=65_535, connection_window=65_535, bdp=BdpConfig(ping_interval=0)
    )
    try:
        tc = test_kitex.new_test_service_client(
            "grpc.testing",
            client.with_host_ports(grpc_go_address),
            client.with_transport_protocol(TransportProtocol.GRPC_H2),
            NOT_ABOUT_DIALING,
        )
    finally:
        h2_config.CLIENT_TUNING = saved
    try:
        for _ in range(2):  # two long streams on one connection
            sizes = [
                len(r.payload.body) async for r in tc.StreamingOutputCall(output_request(*[CHUNK] * COUNT))
            ]
            assert sizes == [CHUNK] * COUNT
        assert await tc.EmptyCall(test_pb2.Empty()) == test_pb2.Empty()
        transport = tc.client._transport
        assert isinstance(transport, H2ClientTransport)
        (conn,) = transport.connections.values()
        assert not conn.closing and not conn.goaway_received.is_set()
        bdp = conn.core._bdp
        assert bdp is not None
        # grpc-go answered the BDP PINGs: the windows grew from Kitex's 64 KiB start.
        assert 2 * 65_535 <= bdp.stream_window <= BDP_LIMIT
    finally:
        await tc.close()
