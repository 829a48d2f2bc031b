"""``kitex-grpc call --tls --cacert`` against a TLS server (both gRPC transports)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kitex_grpc import server
from tests.cli.support import ECHO_PROTO, run
from tests.support import serve
from tests.tls_certs import make_certs


@pytest.mark.parametrize("transport", ["grpc", "grpc-h2"])
async def test_call_over_tls(tmp_path: Path, transport: str) -> None:
    certs = make_certs(tmp_path)
    (tmp_path / "ca.pem").write_bytes(certs.ca)
    opts = (
        server.with_transport_protocol(transport.replace("-", "_")),
        server.with_tls(certs.server_cert, certs.server_key),
    )
    async with serve(*opts) as (svr, _):
        args = ["call", svr.address, "echo.v1.Echo/Unary", "--idl", str(ECHO_PROTO), "--transport", transport]
        result = await asyncio.to_thread(
            run, *args, "--cacert", str(tmp_path / "ca.pem"), "-d", '{"message": "tls"}', "--format", "jsonl"
        )
        assert (result.code, result.out, result.err) == (0, '{"message":"tls"}\n', "")
        # without TLS the handshake fails: an RPC failure, exit 1
        result = await asyncio.to_thread(run, *args, "-d", "{}", "--timeout", "2")
        assert result.code == 1 and result.err.startswith("kitex-grpc call: RPC failed: ")
