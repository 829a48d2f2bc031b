"""kitex-grpc's client, on both gRPC client transports, running the interop cases
(tests/interop/grpc_cases.py) against grpc-go's interop server (grpc-go v1.71.1, interop/grpc/,
on 127.0.0.1 with gzip registered), and against our own TestService on both server transports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kitex_grpc import TransportProtocol, client
from tests.interop.grpc_cases import CASE_FUNCTIONS
from tests.interop.grpc_peer import CASES, build_grpc_binaries, grpc_go_server
from tests.interop.grpc_testservice import serving, test_kitex
from tests.support import NOT_ABOUT_DIALING

pytestmark = pytest.mark.interop

GRPC = TransportProtocol.GRPC
H2 = TransportProtocol.GRPC_H2
# grpc.aio's client has no per-message flags for requests: it compresses every message of a
# compressed call, so the second message of client_compressed_streaming cannot go uncompressed.
GRPCIO_CLIENT_CANNOT = {"client_compressed_streaming"}
# Our grpcio server transport cannot see whether a request was compressed (test_grpc_go_client.py).
GRPCIO_SERVER_CANNOT = {"client_compressed_unary", "client_compressed_streaming"}


@pytest.fixture(scope="module")
def grpc_go_address() -> Iterator[str]:
    bin_dir: Path = build_grpc_binaries()
    with grpc_go_server(bin_dir) as address:
        yield address


async def _run(address: str, protocol: TransportProtocol, case: str) -> None:
    opts = (client.with_host_ports(address), client.with_transport_protocol(protocol), NOT_ABOUT_DIALING)
    tc = test_kitex.new_test_service_client("grpc.testing", *opts)
    uc = test_kitex.new_unimplemented_service_client("grpc.testing", *opts)
    try:
        await CASE_FUNCTIONS[case](tc, uc)
    finally:
        await tc.close()
        await uc.close()


def test_every_case_has_a_function() -> None:
    assert sorted(CASE_FUNCTIONS) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("protocol", [H2, GRPC], ids=lambda p: p.name)
async def test_our_client_against_grpc_go(
    grpc_go_address: str, protocol: TransportProtocol, case: str, request: pytest.FixtureRequest
) -> None:
    if protocol is GRPC and case in GRPCIO_CLIENT_CANNOT:
        request.applymarker(
            pytest.mark.xfail(raises=NotImplementedError, strict=True, reason="grpc.aio client")
        )
    await _run(grpc_go_address, protocol, case)


@pytest.fixture(params=[H2, GRPC], ids=lambda p: f"server-{p.name}")
async def our_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[TransportProtocol, str]]:
    protocol: TransportProtocol = request.param
    async with serving(protocol) as address:
        yield protocol, address


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("protocol", [H2, GRPC], ids=lambda p: f"client-{p.name}")
async def test_our_client_against_our_server(
    our_server: tuple[TransportProtocol, str],
    protocol: TransportProtocol,
    case: str,
    request: pytest.FixtureRequest,
) -> None:
    server_protocol, address = our_server
    if server_protocol is GRPC and case in GRPCIO_SERVER_CANNOT:
        request.applymarker(
            pytest.mark.xfail(strict=True, reason="grpcio server cannot see request compression")
        )
    elif protocol is GRPC and case in GRPCIO_CLIENT_CANNOT:
        request.applymarker(
            pytest.mark.xfail(raises=NotImplementedError, strict=True, reason="grpc.aio client")
        )
    await _run(address, protocol, case)
