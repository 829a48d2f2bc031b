"""Options are validated when made, and a bad one names itself in the error."""

from __future__ import annotations

import math

import pytest

import kitex_grpc
from gen.echo.v1 import echo_kitex
from kitex_grpc import TransportProtocol, callopt, client, server
from kitex_grpc.options._base import fold
from kitex_grpc.options.client import ClientOptions
from kitex_grpc.options.server import ServerOptions


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: client.with_rpc_timeout(-1), r"with_rpc_timeout: duration must be .* got -1"),
        (lambda: client.with_rpc_timeout(math.nan), r"with_rpc_timeout: duration"),
        (lambda: client.with_rpc_timeout(math.inf), r"with_rpc_timeout: duration"),
        (lambda: client.with_connect_timeout(0), r"with_connect_timeout: duration must be .* > 0"),
        (lambda: client.with_host_ports("localhost"), r"with_host_ports: address 'localhost' has no port"),
        (lambda: client.with_host_ports("h:99999"), r"with_host_ports: port 99999 .* out of range"),
        (lambda: client.with_host_ports("h:http"), r"with_host_ports: port 'http' .* is not a number"),
        (lambda: client.with_host_ports("::1:80"), r"with_host_ports: IPv6 address .* '\[addr\]:port'"),
        (lambda: client.with_host_ports(":80"), r"with_host_ports: address ':80' has no host"),
        (lambda: client.with_host_ports(), r"with_host_ports: give at least one"),
        (
            lambda: client.with_transport_protocol("carrier-pigeon"),
            r"with_transport_protocol: unknown transport",
        ),
        (lambda: client.with_max_message_size(0), r"with_max_message_size: expected a positive integer"),
        (lambda: client.with_compression("lz4"), r"with_compression: unsupported compressor 'lz4'"),
        (
            lambda: client.with_tls(certificate_chain=b"x"),
            r"with_tls: certificate_chain and private_key go together",
        ),
        (lambda: server.with_service_addr("nope"), r"with_service_addr: address 'nope' has no port"),
        (lambda: server.with_exit_wait_time(-0.5), r"with_exit_wait_time: duration"),
        (lambda: server.with_tls(b"cert", b""), None),
        (lambda: callopt.with_rpc_timeout(-3), r"callopt.with_rpc_timeout: duration"),
        (lambda: callopt.with_host_port("x"), r"callopt.with_host_port: address 'x' has no port"),
        (lambda: callopt.with_metadata("X-Upper", "v"), r"callopt.with_metadata: key must be lower-case"),
        (lambda: callopt.with_metadata(":path", "v"), r"callopt.with_metadata: key must be lower-case"),
    ],
)
def test_bad_option_raises_naming_the_option(make: object, message: str | None) -> None:
    if message is None:  # accepted: PEM content is only checked when TLS starts
        make()  # type: ignore[operator]
        return
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_type_errors_name_the_option() -> None:
    with pytest.raises(TypeError, match="with_rpc_timeout: expected seconds"):
        client.with_rpc_timeout("1s")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="with_middleware: expected a callable"):
        client.with_middleware(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"callopt.with_metadata: 'x-bin' needs a bytes value"):
        callopt.with_metadata("x-bin", "text")
    with pytest.raises(TypeError, match="expected a client option"):
        kitex_grpc.new_client(echo_kitex.ECHO_SERVICE_INFO, "echo", callopt.with_rpc_timeout(1))  # type: ignore[arg-type]


def test_defaults_follow_kitex() -> None:
    c = fold(ClientOptions, (), "client")
    assert (c.rpc_timeout, c.connect_timeout, c.transport_protocol) == (None, 0.05, TransportProtocol.GRPC)
    assert c.max_message_size == 4 * 1024 * 1024
    s = fold(ServerOptions, (), "server")
    assert (s.service_addr, s.exit_wait_time) == (":8888", 5.0)


def test_options_fold_in_order_and_record_themselves() -> None:
    opts = fold(
        ClientOptions,
        (client.with_rpc_timeout(1), client.with_rpc_timeout(2), client.with_host_ports("a:1", "b:2")),
        "client",
    )
    assert opts.rpc_timeout == 2.0 and opts.host_ports == ("a:1", "b:2")
    assert [(r.name, r.value) for r in opts.records] == [
        ("with_rpc_timeout", "1.0"),
        ("with_rpc_timeout", "2.0"),
        ("with_host_ports", "('a:1', 'b:2')"),
    ]
    with pytest.raises(AttributeError):
        opts.rpc_timeout = 3  # type: ignore[misc]


def test_transport_protocol_parsing() -> None:
    assert TransportProtocol.parse("GRPC_H2") is TransportProtocol.GRPC_H2
    assert TransportProtocol.parse("ttheader_framed") is TransportProtocol.TTHEADER_FRAMED


def test_empty_destination_and_unregistered_server_are_errors() -> None:
    with pytest.raises(ValueError, match="destination service name"):
        echo_kitex.new_client("")


async def test_server_without_service_refuses_to_start() -> None:
    svr = kitex_grpc.new_server(server.with_service_addr("127.0.0.1:0"))
    with pytest.raises(RuntimeError, match="no service registered"):
        await svr.start()


def test_registering_a_service_twice_is_an_error() -> None:
    svr = echo_kitex.new_server(echo_kitex.EchoHandler())
    with pytest.raises(ValueError, match="already registered"):
        svr.register_service(echo_kitex.ECHO_SERVICE_INFO, echo_kitex.EchoHandler())
