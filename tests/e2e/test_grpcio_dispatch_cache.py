"""The grpcio server's dispatch cache stays bounded whatever ``:path`` values clients send (issue 23
finding 6: 5,000 distinct unknown paths used to leave 4,965 entries)."""

from __future__ import annotations

import grpc
import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import server
from kitex_grpc.transport.grpcio import server as grpcio_server
from kitex_grpc.transport.grpcio.server import GrpcioServerTransport
from tests.support import EchoService, Req


async def test_unknown_paths_are_not_cached_and_known_ones_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(grpcio_server, "DISPATCH_CACHE_SIZE", 8)
    svr = echo_kitex.new_server(EchoService(), server.with_service_addr("127.0.0.1:0"))
    await svr.start()
    try:
        transport = svr._transport
        assert isinstance(transport, GrpcioServerTransport) and transport.dispatch is not None
        async with grpc.aio.insecure_channel(svr.address) as channel:
            for i in range(300):
                call = channel.unary_unary(f"/nope.Service{i}/Method{i}")
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(b"", timeout=5)
                assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
            assert len(transport.dispatch._cache) == 0
            body = Req(message="hi").SerializeToString()
            for i in range(20):  # the package is ignored (as Kitex): every one of these is Echo.Unary
                reply = await channel.unary_unary(f"/pkg{i}.Echo/Unary")(body, timeout=5)
                assert Req.FromString(reply).message == "hi"
            assert 1 <= len(transport.dispatch._cache) <= 8
    finally:
        await svr.stop()
