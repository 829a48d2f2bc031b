"""TLS (and mutual TLS) on real sockets, and cancellation that starts on the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import StatusCode, StatusError, client, server
from kitex_grpc.errors import CanceledError, GetConnectionError, KitexError
from tests.support import Req, connect, serve
from tests.tls_certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


async def test_tls_round_trip(certs: Certs) -> None:
    async with (
        serve(server.with_tls(certs.server_cert, certs.server_key)) as (svr, _),
        connect(svr, client.with_tls(root_certificates=certs.ca, server_hostname="localhost")) as cli,
    ):
        assert (await cli.Unary(Req(message="secret"))).message == "secret"
        assert [r.seq async for r in cli.ServerStream(Req(seq=2))] == [0, 1]


async def test_plaintext_client_cannot_talk_to_tls_server(certs: Certs) -> None:
    async with (
        serve(server.with_tls(certs.server_cert, certs.server_key)) as (svr, _),
        connect(svr, client.with_connect_timeout(1)) as cli,
    ):
        with pytest.raises(KitexError):
            await cli.Unary(Req())


async def test_untrusted_server_certificate_is_refused(certs: Certs, tmp_path: Path) -> None:
    other = make_certs(tmp_path)
    async with (
        serve(server.with_tls(certs.server_cert, certs.server_key)) as (svr, _),
        connect(svr, client.with_tls(root_certificates=other.ca), client.with_connect_timeout(1)) as cli,
    ):
        with pytest.raises(GetConnectionError):
            await cli.Unary(Req())


async def test_mutual_tls_requires_a_client_certificate(certs: Certs) -> None:
    server_opts = server.with_tls(
        certs.server_cert, certs.server_key, root_certificates=certs.ca, require_client_auth=True
    )
    async with serve(server_opts) as (svr, _):
        with_cert = client.with_tls(
            certs.ca, certs.client_cert, certs.client_key, server_hostname="localhost"
        )
        async with connect(svr, with_cert) as cli:
            assert (await cli.Unary(Req(message="mtls"))).message == "mtls"
        without = client.with_tls(certs.ca, server_hostname="localhost")
        async with connect(svr, without, client.with_connect_timeout(1)) as cli:
            with pytest.raises(KitexError):
                await cli.Unary(Req())


class Quitter(echo_kitex.EchoHandler):
    """Cancels from the server side: after two messages the handler ends the call as CANCELLED."""

    async def Bidi(self, requests: AsyncIterator[echo_pb2.EchoRequest]) -> AsyncIterator[echo_pb2.EchoReply]:
        n = 0
        async for r in requests:
            n += 1
            if n > 2:
                raise StatusError(StatusCode.CANCELLED, "server gave up")
            yield echo_pb2.EchoReply(seq=r.seq)

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        raise StatusError(StatusCode.CANCELLED, "server cancelled")


async def test_server_side_cancellation_reaches_the_client() -> None:
    async with serve(handler=Quitter()) as (svr, _), connect(svr) as cli:  # type: ignore[arg-type]
        with pytest.raises(CanceledError, match="server cancelled"):
            await cli.Unary(Req())
        stream = await cli.Bidi()
        for i in range(2):
            await stream.send(Req(seq=i))
            assert (await stream.recv()).seq == i
        await stream.send(Req(seq=2))
        with pytest.raises(CanceledError) as info:
            await stream.recv()
        assert info.value.remote and info.value.grpc_status is StatusCode.CANCELLED
