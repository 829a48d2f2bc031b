"""A mock server from an IDL, without generated code::

    python examples/generic/mock_server.py --idl protos/echo/v1/echo.proto \\
        --reply 'Unary={"message": "mocked"}'

Every method of the IDL's service answers its canned JSON reply (``--reply Method=JSON``), or echoes
the request when it has none (requests and replies of the Echo proto share their fields). Works for
``.thrift`` (TTHeader, Framed, gRPC) and ``.proto`` (gRPC with streams, Kitex Protobuf) IDLs, serves
gRPC reflection and health, and prints ``LISTENING <addr>``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import kitex_grpc
from kitex_grpc import eventloop, generic, server


class Mock:
    """A generic handler: JSON text in, JSON text out, for every kind of call."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies

    async def call(self, method: str, request: str) -> str:
        return self.replies.get(method, request)

    async def server_stream(self, method: str, request: str) -> AsyncIterator[str]:
        yield self.replies.get(method, request)

    async def client_stream(self, method: str, requests: AsyncIterator[str]) -> str:
        received = [request async for request in requests]
        return self.replies.get(method, received[-1] if received else "{}")

    async def bidi_stream(self, method: str, requests: AsyncIterator[str]) -> AsyncIterator[str]:
        async for request in requests:
            yield self.replies.get(method, request)


def mock_server(idl: str, replies: dict[str, str], *opts: server.ServerOption) -> kitex_grpc.Server:
    """The whole mock: a generic of the IDL, registered with :class:`Mock`."""
    g = generic.json_thrift(idl) if idl.endswith(".thrift") else generic.json_pb(idl)
    svr = kitex_grpc.new_server(server.with_reflection(), server.with_health(), *opts)
    return generic.register_service(svr, g, Mock(replies))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idl", required=True, help=".thrift or .proto file")
    parser.add_argument("--addr", default="127.0.0.1:8888")
    parser.add_argument("--transport", default="grpc_h2")
    parser.add_argument("--reply", action="append", default=[], metavar="METHOD=JSON")
    args = parser.parse_args()
    replies = dict(item.split("=", 1) for item in args.reply)
    svr = mock_server(
        args.idl,
        replies,
        server.with_service_addr(args.addr),
        server.with_transport_protocol(args.transport),
        server.with_exit_wait_time(1),
    )
    await svr.start()
    print(f"LISTENING {svr.address}", flush=True)
    await svr.run()


if __name__ == "__main__":
    eventloop.run(main())
