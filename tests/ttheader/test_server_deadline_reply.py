"""The server's deadline reply is a timeout on the TTHeader client too (issue 23, finding 11).

When a call's deadline passes, the server's timer (int key 12) and the client's race; when the
server's "biz error: context deadline exceeded" EXCEPTION wins, the client must still raise
RPCTimeoutError, as the gRPC transports map DEADLINE_EXCEEDED. The tests make the server's reply win
every time: a client middleware sends a shorter timeout in key 12 than the client's own timer, on
asyncio's loop and on uvloop. Real sockets on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kitex_grpc import callopt, client, eventloop
from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import RPCTimeoutError
from kitex_grpc.rpcinfo import RPCConfig, RPCInfo
from kitex_grpc.transport.ttheader.errors import ApplicationError
from tests.ttheader import support as tt

CLIENT_TIMEOUT = 3.0  # the client's own timer: far behind the server's
SERVER_TIMEOUT = 0.05  # what key 12 says


def sends_shorter_timeout(next_endpoint: Endpoint) -> Endpoint:
    """Key 12 carries SERVER_TIMEOUT; the client's timer (armed above) still counts CLIENT_TIMEOUT."""

    async def shorter(ri: RPCInfo, request: Any) -> Any:
        c = ri.config
        ri.config = RPCConfig(SERVER_TIMEOUT, c.connect_timeout, c.transport_protocol, c.compression, True)
        return await next_endpoint(ri, request)

    return shorter


async def _server_reply_wins(transport: str) -> None:
    async with (
        tt.serve() as (svr, _),
        tt.connect(svr.address, transport, client.with_middleware(sends_shorter_timeout)) as cli,
    ):
        started = time.monotonic()
        with pytest.raises(RPCTimeoutError) as info:
            await cli.echo(tt.Req(message="sleep:2000"), callopt.with_rpc_timeout(CLIENT_TIMEOUT))
        elapsed = time.monotonic() - started
        assert elapsed < CLIENT_TIMEOUT / 2  # the server's reply ended the call, not the client's timer
        assert info.value.remote and "context deadline exceeded" in str(info.value)
        # The connection was answered, not broken: the next call on it works.
        assert (await cli.echo(tt.Req(message="after"))).message == "after"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("transport", ["ttheader", "ttheader_framed"])
def test_the_servers_deadline_reply_is_an_rpc_timeout(loop: str, transport: str) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await _server_reply_wins(transport)

    eventloop.run(bounded(), loop=loop)  # type: ignore[arg-type]


async def test_the_same_text_without_a_deadline_sent_stays_an_application_error() -> None:
    # Over Framed no key 12 is sent: the server had no deadline of ours, so its handler's error text
    # is nothing but a handler error.
    class Says(tt.ThriftEcho):
        async def echo(self, req: Any) -> Any:
            raise RuntimeError("context deadline exceeded")

    async with tt.serve(handler=Says()) as (svr, _), tt.connect(svr.address, "framed") as cli:
        with pytest.raises(ApplicationError) as info:
            await cli.echo(tt.Req(message="x"), callopt.with_rpc_timeout(CLIENT_TIMEOUT))
        assert str(info.value) == "remote or network error[remote]: biz error: context deadline exceeded"
