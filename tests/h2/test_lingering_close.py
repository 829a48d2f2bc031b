"""A connection closed for a protocol error: the peer reads our GOAWAY, never a reset.

Closing a socket with unread input makes the kernel answer with RST (RFC 9293 §3.6.1), and a peer that
gets the RST first loses the GOAWAY before it (h2spec saw "connection reset by peer" under load). The
server shuts its side after the GOAWAY and drops what the peer still sends, until the peer's EOF or
``LINGER_SECONDS``.
"""

from __future__ import annotations

import asyncio
import struct

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from kitex_grpc import TransportProtocol, server
from kitex_grpc.transport.h2.protocol import LINGER_SECONDS
from tests.h2.helpers import h2_client, h2_server, until_gone
from tests.support import Req, serve

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
PROTOCOLS = [TransportProtocol.GRPC_H2, TransportProtocol.TTHEADER]  # TTHEADER: the HTTP/2 hand-over


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


# DATA on stream 0 is a connection error of type PROTOCOL_ERROR (RFC 9113 §6.1).
BAD = frame(0x0, 0, 0, b"x")
# 1 MiB of PINGs after it: far more than one socket read, so most of it is unread when the error is
# found. Without the lingering close the server's close() resets the connection.
FOLLOWING = b"".join(frame(0x6, 0, 0, i.to_bytes(8, "big")) for i in range((1 << 20) // 17))


def goaway_code(data: bytes) -> int | None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.ConnectionTerminated):
            return int(event.error_code)
    return None


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    data = bytearray()
    while chunk := await reader.read(65536):  # a reset raises ConnectionResetError: the test fails
        data += chunk
    return bytes(data)


async def unary_ok(address: str, protocol: TransportProtocol) -> None:
    if protocol is TransportProtocol.GRPC_H2:
        cli = h2_client(address)
        try:
            assert (await cli.Unary(Req(message="ok"))).message == "ok"
        finally:
            await cli.close()


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
async def test_a_peer_that_keeps_sending_after_its_error_still_reads_the_goaway(
    protocol: TransportProtocol,
) -> None:
    async with asyncio.timeout(20), serve(server.with_transport_protocol(protocol)) as (svr, _):
        host, port = svr.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(PREFACE + EMPTY_SETTINGS + BAD + FOLLOWING)
            await writer.drain()  # the server keeps reading (and dropping) after its GOAWAY
            writer.write_eof()
            data = await read_to_eof(reader)
        finally:
            writer.close()
        assert goaway_code(data) == h2.errors.ErrorCodes.PROTOCOL_ERROR
        await unary_ok(svr.address, protocol)


async def test_a_silent_peer_is_closed_after_the_linger_time() -> None:
    async with asyncio.timeout(20), h2_server() as (svr, _, transport):
        host, port = svr.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(PREFACE + EMPTY_SETTINGS + BAD)  # and then nothing, not even an EOF
            loop = asyncio.get_running_loop()
            start = loop.time()
            data = await read_to_eof(reader)  # our FIN follows the GOAWAY at once
            assert goaway_code(data) == h2.errors.ErrorCodes.PROTOCOL_ERROR
            assert len(transport.connections) == 1  # lingering: still reading what the peer sends
            await until_gone(transport, LINGER_SECONDS + 3)
            waited = loop.time() - start
        finally:
            writer.close()
        assert LINGER_SECONDS * 0.9 <= waited < LINGER_SECONDS + 3
