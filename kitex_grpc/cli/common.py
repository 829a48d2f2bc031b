"""What the network subcommands share: client options from flags, and how failures are reported."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kitex_grpc import client
from kitex_grpc.transport_protocol import TransportProtocol

__all__ = ["UsageError", "client_options", "fail", "protocol"]

_PROTOCOLS = {
    "grpc": TransportProtocol.GRPC,
    "grpc-h2": TransportProtocol.GRPC_H2,
    "ttheader": TransportProtocol.TTHEADER,
    "ttheader-framed": TransportProtocol.TTHEADER_FRAMED,
    "framed": TransportProtocol.FRAMED,
    "ttheader-streaming": TransportProtocol.TTHEADER_STREAMING,  # Thrift streams (KITEX-WIRE-2 §11)
    # Kitex Protobuf is always framed after its TTHeader (KITEX-WIRE.md §1.3)
    "kitex-protobuf": TransportProtocol.TTHEADER_FRAMED,
}


class UsageError(Exception):
    """Bad usage or bad input: exit 2, nothing sent."""


def protocol(name: str) -> TransportProtocol:
    return _PROTOCOLS[name]


def fail(command: str, message: str) -> None:
    print(f"kitex-grpc {command}: {message}", file=sys.stderr)


def check_addr(addr: str) -> str:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"address {addr!r} is not host:port")
    return addr


def client_options(args: argparse.Namespace, transport: str) -> list[Any]:
    """``with_*`` options for the flags every network subcommand has."""
    opts: list[Any] = [
        client.with_host_ports(check_addr(args.addr)),
        client.with_transport_protocol(protocol(transport)),
    ]
    if args.connect_timeout is not None:
        if not args.connect_timeout > 0:
            raise UsageError("--connect-timeout must be > 0")
        opts.append(client.with_connect_timeout(args.connect_timeout))
    if args.tls or args.cacert:
        if not protocol(transport).is_grpc:
            raise UsageError("--tls needs a gRPC transport (grpc or grpc-h2)")
        roots = None
        if args.cacert:
            try:
                roots = Path(args.cacert).read_bytes()
            except OSError as exc:
                raise UsageError(f"--cacert: {exc}") from None
        opts.append(client.with_tls(roots, server_hostname=args.servername))
    return opts
