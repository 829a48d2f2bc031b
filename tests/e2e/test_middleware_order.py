"""The chain runs in Kitex's documented order on both sides, and middlewares see what they should."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from kitex_grpc import Endpoint, RPCInfo, callopt, client, server
from kitex_grpc.errors import BizError, BizStatusError, GetConnectionError, KitexError
from kitex_grpc.streaming import RecvEndpoint, SendEndpoint
from tests.support import Req, connect, serve


def recorder(name: str, log: list[str], seen: dict[str, Any] | None = None) -> Any:
    def middleware(next_endpoint: Endpoint) -> Endpoint:
        async def endpoint(ri: RPCInfo, request: Any) -> Any:
            log.append(f"{name}>")
            if seen is not None:
                seen[name] = {"deadline": ri.deadline, "address": ri.callee.address}
            try:
                return await next_endpoint(ri, request)
            except BaseException as exc:
                log.append(f"{name}!{type(exc).__name__}")
                raise
            finally:
                log.append(f"<{name}")

        return endpoint

    middleware.__qualname__ = name
    return middleware


async def test_client_chain_order_is_kitex_order() -> None:
    log: list[str] = []
    seen: dict[str, Any] = {}
    async with serve() as (svr, _):
        opts = (
            client.with_middleware(recorder("a", log, seen), recorder("b", log, seen)),
            client.with_instance_middleware(recorder("i", log, seen)),
            client.with_rpc_timeout(5),
        )
        async with connect(svr, *opts) as cli:
            assert cli.client.chain_names == (
                "rpc_timeout",
                "user:a",
                "user:b",
                "discovery",
                "instance:i",
                "error_mapping",
                "transport",
            )
            await cli.Unary(Req(message="x"))
    assert log == ["a>", "b>", "i>", "<i", "<b", "<a"]
    # user middlewares run inside the RPC timeout (deadline set) and before discovery (no address yet)
    assert seen["a"]["deadline"] is not None and seen["a"]["address"] == ""
    # instance middlewares run after an instance was picked
    assert seen["i"]["address"] == svr.address


async def test_client_user_middleware_sees_mapped_errors() -> None:
    """error_mapping sits below user middlewares: they see KitexErrors, never raw transport errors."""
    log: list[str] = []
    async with serve() as (svr, _), connect(svr, client.with_middleware(recorder("a", log))) as cli:
        with pytest.raises(BizStatusError):
            await cli.Unary(Req(message="biz:5:x"))
        dead = "127.0.0.1:1"
        with pytest.raises(GetConnectionError):
            await cli.Unary(Req(), callopt.with_host_port(dead))
    assert log == ["a>", "a!BizStatusError", "<a", "a>", "a!GetConnectionError", "<a"]


async def test_server_chain_order() -> None:
    log: list[str] = []
    seen: dict[str, Any] = {}
    opts = (server.with_middleware(recorder("s1", log, seen), recorder("s2", log, seen)),)
    async with serve(*opts) as (svr, _), connect(svr) as cli:
        assert svr.chain_names == ("server_timeout", "user:s1", "user:s2", "handler_error", "handler")
        await cli.Unary(Req(message="x"), callopt.with_rpc_timeout(5))
        assert log == ["s1>", "s2>", "<s2", "<s1"]
        # the deadline from grpc-timeout is on RPCInfo before user middlewares run
        assert seen["s1"]["deadline"] is not None
        log.clear()
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="error:boom"))
        # handler_error is inside user middlewares: they see BizError, not the RuntimeError
        assert log == ["s1>", "s2>", "s2!BizError", "<s2", "s1!BizError", "<s1"]
        log.clear()
        with pytest.raises(BizStatusError):
            await cli.Unary(Req(message="biz:1:b"))
        assert log == ["s1>", "s2>", "s2!BizStatusError", "<s2", "s1!BizStatusError", "<s1"]
    assert issubclass(BizError, KitexError)


async def test_stream_middlewares_see_every_message_both_sides() -> None:
    client_sent: list[str] = []
    client_recv: list[str] = []
    server_sent: list[str] = []
    server_recv: list[str] = []

    def send_mw(log: list[str]) -> Any:
        def mw(next_send: SendEndpoint) -> SendEndpoint:
            async def send(ri: RPCInfo, message: Any) -> None:
                log.append(message.message)
                await next_send(ri, message)

            return send

        return mw

    def recv_mw(log: list[str]) -> Any:
        def mw(next_recv: RecvEndpoint) -> RecvEndpoint:
            async def recv(ri: RPCInfo) -> Any:
                message = await next_recv(ri)
                log.append(message.message)
                return message

            return recv

        return mw

    server_opts = (
        server.with_stream_send_middleware(send_mw(server_sent)),
        server.with_stream_recv_middleware(recv_mw(server_recv)),
    )
    client_opts = (
        client.with_stream_send_middleware(send_mw(client_sent)),
        client.with_stream_recv_middleware(recv_mw(client_recv)),
    )
    async with serve(*server_opts) as (svr, _), connect(svr, *client_opts) as cli:
        stream = await cli.Bidi()
        for m in ("one", "two", "three"):
            await stream.send(Req(message=m))
            await stream.recv()
        await stream.close_send()
        assert [r async for r in stream] == []
        replies = [r.message async for r in cli.ServerStream(Req(message="s", seq=2))]
    assert replies == ["s", "s"]
    assert client_sent == ["one", "two", "three", "s"]
    assert client_recv == ["one", "two", "three", "s", "s"]
    assert server_recv == ["one", "two", "three", "s"]
    assert server_sent == ["one", "two", "three", "s", "s"]


class _MetadataAddingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), ("x-from-interceptor", "yes")]
        details = details._replace(metadata=metadata)
        return await continuation(details, request)


class _CountingServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        self.methods.append(details.method)
        return await continuation(details)


async def test_plain_grpcio_interceptors_can_be_attached() -> None:
    import json

    counting = _CountingServerInterceptor()
    async with (
        serve(server.with_grpcio_interceptors(counting)) as (svr, _),
        connect(svr, client.with_grpcio_interceptors(_MetadataAddingInterceptor())) as cli,
    ):
        reply = await cli.Unary(Req(message="meta"))
    assert json.loads(reply.message)["metadata"] == {"x-from-interceptor": "yes"}
    assert counting.methods == ["/echo.v1.Echo/Unary"]
