"""Helpers for the h2 transport tests: servers and clients with custom tuning, and a raw h2 peer."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events

import kitex_grpc
from gen.echo.v1 import echo_kitex
from kitex_grpc import TransportProtocol, client, server
from kitex_grpc.transport.h2 import config as h2_config
from kitex_grpc.transport.h2.client import H2ClientTransport
from kitex_grpc.transport.h2.config import H2Tuning
from kitex_grpc.transport.h2.server import H2ServerTransport
from tests.support import NOT_ABOUT_DIALING, EchoService

H2 = TransportProtocol.GRPC_H2


@asynccontextmanager
async def h2_server(
    *opts: server.ServerOption, handler: Any = None, tuning: H2Tuning | None = None
) -> AsyncIterator[tuple[kitex_grpc.Server, Any, H2ServerTransport]]:
    """Echo on an h2 server; with ``tuning`` the transport is built here with those knobs."""
    svc = handler or EchoService()
    svr = echo_kitex.new_server(
        svc, server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(H2), *opts
    )
    if tuning is None:
        await svr.start()
        transport = svr._transport
    else:
        transport = H2ServerTransport(svr.options, svr.dispatcher, tuning)
        await transport.start()
        svr._transport = transport  # so svr.address and svr.stop() use it
        svr._serving = True
    assert isinstance(transport, H2ServerTransport)
    try:
        yield svr, svc, transport
    finally:
        await svr.stop()


def h2_client(
    address: str, *opts: client.ClientOption, tuning: H2Tuning | None = None
) -> echo_kitex.EchoClient:
    saved = h2_config.CLIENT_TUNING
    if tuning is not None:
        h2_config.CLIENT_TUNING = tuning  # the transport reads its default when it is built
    try:
        return echo_kitex.new_client(
            "echo",
            client.with_host_ports(address),
            client.with_transport_protocol(H2),
            NOT_ABOUT_DIALING,
            *opts,
        )
    finally:
        h2_config.CLIENT_TUNING = saved


def transport_of(cli: echo_kitex.EchoClient) -> H2ClientTransport:
    transport = cli.client._transport
    assert isinstance(transport, H2ClientTransport)
    return transport


def make_cert(directory: Path) -> tuple[bytes, bytes]:
    """A self-signed certificate for localhost / 127.0.0.1 (PEM cert, PEM key), made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert.read_bytes(), key.read_bytes()


class RawH2:
    """A hand-driven h2 client connection for crafting bad input (validation off)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True, header_encoding=None, validate_outbound_headers=False,
                normalize_outbound_headers=False, validate_inbound_headers=False,
            )
        )  # fmt: skip
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.closed = False

    @classmethod
    async def open(cls, address: str) -> RawH2:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        raw = cls(reader, writer)
        await raw.flush()
        return raw

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def write_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def request(
        self, path: str = "/echo.v1.Echo/Unary", content_type: bytes = b"application/grpc", **extra: bytes
    ) -> int:
        sid = int(self.conn.get_next_available_stream_id())
        headers = [
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
            (b":authority", b"echo"), (b"content-type", content_type), (b"te", b"trailers"),
        ]  # fmt: skip
        headers += [(k.replace("_", "-").encode(), v) for k, v in extra.items()]
        self.conn.send_headers(sid, headers)
        return sid

    async def until(self, predicate: Any, seconds: float = 5.0) -> list[h2.events.Event]:
        """Read until ``predicate(events)`` holds or the socket closes (bounded in time)."""
        async with asyncio.timeout(seconds):
            while not predicate(self.events):
                data = await self.reader.read(65536)
                if not data:
                    self.closed = True
                    break
                try:
                    self.events.extend(self.conn.receive_data(data))
                except h2.exceptions.ProtocolError:
                    self.closed = True
                    break
                await self.flush()
        return self.events

    def ended(self, sid: int) -> bool:
        return any(
            getattr(ev, "stream_id", None) == sid
            and isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset)
            for ev in self.events
        )

    def headers(self, sid: int) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for ev in self.events:
            if getattr(ev, "stream_id", None) == sid and isinstance(
                ev, h2.events.ResponseReceived | h2.events.TrailersReceived
            ):
                out.update(dict(ev.headers))
        return out

    def close(self) -> None:
        self.writer.close()


def grpc_frame(body: bytes, flag: int = 0, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return bytes([flag]) + size.to_bytes(4, "big") + body


async def until_gone(transport: H2ServerTransport, limit: float = 5.0) -> None:
    """Wait until the server has closed every connection it holds now: a connection ended for a
    protocol error lingers, dropping our input, until our EOF or for at most LINGER_SECONDS
    (transport/h2/protocol.py). Each connection's ``done`` is set after it left ``connections``."""
    async with asyncio.timeout(limit):
        await asyncio.gather(*(conn.done for conn in list(transport.connections)))
    assert not transport.connections
