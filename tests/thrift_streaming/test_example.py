"""examples/thrift_streaming: its server and client, in this process on 127.0.0.1."""

from __future__ import annotations

import pytest

from examples.thrift_streaming.client import demo
from examples.thrift_streaming.server import new_server

EXPECTED = [
    "Echo: hello seq=1",
    "Echo raised StreamError(code=1, message='declared')",
    "EchoUnary: unary",
    "EchoServer: seqs [0, 1, 2]",
    "EchoServer: seqs [0, 1], then BizStatusError(1002, 'out of ticks')",
    "EchoClient: 'a,b,c' (3 messages)",
    "EchoBidi: PING",
    "EchoBidi: PONG seq=2",
    "EchoBidi: eof seq=2",
]


@pytest.mark.parametrize(
    ("server_transport", "client_transport"),
    [("grpc_h2", "grpc_h2"), ("grpc", "grpc"), ("ttheader", "grpc_h2")],
)
async def test_example_runs_every_method(server_transport: str, client_transport: str) -> None:
    svr = new_server("127.0.0.1:0", server_transport)
    await svr.start()
    try:
        assert await demo(svr.address, client_transport) == EXPECTED
    finally:
        await svr.stop()
