"""``server.with_listener``: serving sockets made by the caller (what each worker does)."""

from __future__ import annotations

import socket

import pytest

from examples.workers.app import PidEcho
from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client, server


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_with_listener_refuses_what_it_cannot_serve() -> None:
    with socket.socket() as unbound, pytest.raises(ValueError, match="is not listening"):
        server.with_listener(unbound)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, pytest.raises(TypeError):
        server.with_listener(udp)
    with pytest.raises(ValueError, match="at least one"):
        server.with_listener()


@pytest.mark.parametrize("transport", ["grpc_h2", "ttheader", "grpc"])
async def test_server_serves_the_given_socket(transport: str) -> None:
    sock = _listening()
    addr = f"127.0.0.1:{sock.getsockname()[1]}"
    svr = echo_kitex.new_server(
        PidEcho(),
        server.with_listener(sock),
        server.with_transport_protocol(transport),
        server.with_exit_wait_time(0.5),
    )
    if transport == "grpc":
        with pytest.raises(ValueError, match="grpcio cannot serve a given socket"):
            await svr.start()
        sock.close()
        return
    await svr.start()
    try:
        assert svr.address == addr
        cli = echo_kitex.new_client(
            "echo",
            client.with_host_ports(addr),
            client.with_transport_protocol(transport),
            client.with_rpc_timeout(5),
        )
        try:
            reply = await cli.Unary(echo_pb2.EchoRequest(message="given"))
        finally:
            await cli.close()
        assert reply.message.startswith("given pid=")
    finally:
        await svr.stop()
    assert sock.fileno() == -1  # the server closed the socket it served
