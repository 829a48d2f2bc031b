"""Every transport on uvloop, and :func:`kitex_grpc.eventloop.run`'s choice of loop.

These tests run their own loops (``eventloop.run``), not pytest-asyncio's, on real 127.0.0.1 sockets.
uvloop is a dev dependency, so it is imported, not skipped.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
import uvloop

from kitex_grpc import TransportProtocol, callopt, client, eventloop, server
from kitex_grpc.errors import BizStatusError, RPCTimeoutError
from tests.support import Req, connect, serve
from tests.ttheader import support as tt

TIME_LIMIT = 20.0


def _on_uvloop(main: Any) -> Any:
    async def bounded() -> Any:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        async with asyncio.timeout(TIME_LIMIT):
            return await main

    return eventloop.run(bounded(), loop="uvloop")


@pytest.mark.parametrize("protocol", [TransportProtocol.GRPC, TransportProtocol.GRPC_H2])
def test_grpc_transports_on_uvloop(protocol: TransportProtocol) -> None:
    async def main() -> None:
        async with (
            serve(server.with_transport_protocol(protocol)) as (svr, svc),
            connect(svr, client.with_transport_protocol(protocol)) as cli,
        ):
            reply = await cli.Unary(Req(message="hi", seq=7))
            assert (reply.message, reply.seq) == ("hi", 7)
            got = [r.seq async for r in cli.ServerStream(Req(message="n", seq=3))]
            assert got == [0, 1, 2]
            stream = await cli.Bidi()
            for i in range(3):
                await stream.send(Req(message="b", seq=i))
                assert (await stream.recv()).seq == i
            await stream.close_send()
            with pytest.raises(BizStatusError) as info:
                await cli.Unary(Req(message="biz:1001:no"))
            assert (info.value.code, info.value.message, info.value.extra) == (1001, "no", {"k": "v"})
            # A deadline is a timer on the loop: it must fire on uvloop too.
            with pytest.raises(RPCTimeoutError):
                await cli.Unary(Req(message="block"), callopt.with_rpc_timeout(0.2))
            await asyncio.wait_for(svc.cancelled.wait(), 5)

    _on_uvloop(main())


@pytest.mark.parametrize("protocol", [TransportProtocol.TTHEADER, TransportProtocol.FRAMED])
def test_ttheader_transports_on_uvloop(protocol: TransportProtocol) -> None:
    async def main() -> None:
        async with tt.serve() as (svr, _handler), tt.connect(svr.address, protocol.value) as cli:
            reply = await cli.echo(tt.Req(message="hi", seq=5))
            assert (reply.message, reply.seq) == ("hi", 5)
            # A handler that suspends leaves the eager step and is resumed by the connection's task.
            reply = await cli.echo(tt.Req(message="sleep:1", seq=6))
            assert (reply.message, reply.seq) == ("sleep:1", 6)
            with pytest.raises(tt.echo_thrift.EchoError):
                await cli.fail(tt.Req(message="boom", seq=9))
            results = await asyncio.gather(*(cli.echo(tt.Req(message="c", seq=i)) for i in range(50)))
            assert sorted(r.seq for r in results) == list(range(50))

    _on_uvloop(main())


def test_auto_picks_uvloop_when_installed_and_asyncio_on_request() -> None:
    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert eventloop.uvloop_available()
    assert eventloop.run(loop_type()) is uvloop.Loop
    assert eventloop.run(loop_type(), loop="asyncio") is not uvloop.Loop


def test_unknown_loop_name_is_refused_without_leaking_the_coroutine() -> None:
    async def nothing() -> None:
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a RuntimeWarning
        with pytest.raises(ValueError, match="loop must be"):
            eventloop.run(nothing(), loop="trio")  # type: ignore[arg-type]
