"""Generic Thrift clients and servers on real sockets, against typed peers and each other."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kitex_grpc import client, thrift
from kitex_grpc.endpoint import Endpoint
from kitex_grpc.errors import RemoteOrNetworkError
from kitex_grpc.generic import (
    ConvertError,
    IDLExceptionError,
    binary_thrift,
    json_thrift,
    map_thrift,
    new_client,
    register_service,
    register_unknown_handler,
)
from kitex_grpc.rpcinfo import RPCInfo
from tests.generic.support import (
    RICH_IDL,
    THRIFT_TRANSPORTS,
    TTHEADER_TRANSPORTS,
    TypedRich,
    client_opts,
    rich_thrift,
    serve_with,
)

REQUEST = {
    "big": 9007199254740993,  # 2^53 + 1: exact both ways
    "small": -5,
    "data": "AAH/",
    "items": [{"id": 1, "note": "n"}],
    "tags": ["x"],
    "by_id": {"12": {"id": 12}},
    "flags": {"true": 3},
    "color": 2,
    "nested": {"k": [{"1": "one"}]},
}


@pytest.mark.parametrize("transport", THRIFT_TRANSPORTS)
async def test_json_thrift_client_calls_a_typed_server(transport: str) -> None:
    typed = TypedRich()
    seen: list[str] = []

    def record(next_endpoint: Endpoint) -> Endpoint:
        async def endpoint(ri: RPCInfo, request: Any) -> Any:
            seen.append(f"{ri.method.name}:{type(request).__name__}")  # the chain sees the args struct
            return await next_endpoint(ri, request)

        return endpoint

    def register(svr: Any) -> None:
        svr.register_service(thrift.service_info(rich_thrift.Rich), typed)

    async with serve_with(register, transport) as svr:
        g = json_thrift(RICH_IDL)
        async with new_client(g, "rich", *client_opts(svr, transport, client.with_middleware(record))) as cli:
            reply = json.loads(await cli.call("Echo", json.dumps(REQUEST)))
            assert reply == {
                **REQUEST,
                "items": [{"id": 1, "note": "n", "ratio": 0.0}],
                "tiny": 0,
                "b": 0,
                "by_id": {"12": {"id": 12, "ratio": 0.0}},
                "d": 0.0,
                "ok": False,
            }
            assert await cli.call("Name", '"bob"') == '"hello bob"'
            assert await cli.call("Ping", "42") is None
            if transport != "grpc":  # grpcio's server fails to encode a one-way reply (None): not ours
                assert await cli.call("Fire", '{"big": 1}') is None
                await typed.fired.wait()
            with pytest.raises(IDLExceptionError) as exc:
                await cli.call("Echo", '{"big": -1}')
            assert (exc.value.field, exc.value.type_name) == ("err", "RichError")
            assert json.loads(exc.value.value) == {"code": 7, "reason": "minus one"}
            calls = typed.calls
            with pytest.raises(ConvertError) as bad:
                await cli.call("Echo", '{"big": 1, "items": [{"id": "x"}]}')
            assert str(bad.value) == "items[0].id: expected i64, got a string 'x'"
            assert typed.calls == calls  # nothing was sent
    assert typed.pinged == [42]
    assert seen[:2] == ["Echo:Echo_args", "Name:Name_args"]


class Mock:
    """A generic handler of the Rich IDL: JSON in, JSON out."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []

    async def call(self, method: str, request: Any) -> Any:
        self.requests.append((method, request))
        if method == "Echo":
            body = json.loads(request)
            if body["big"] == -1:
                raise IDLExceptionError("err", '{"code": 9, "reason": "mocked"}')
            if body["big"] == -2:
                return '{"big": "not a number"}'
            return json.dumps({"big": body["big"] * 2, "items": [{"id": 5}]})
        if method == "Name":
            return json.dumps(f"mock {json.loads(request)}")
        return None


@pytest.mark.parametrize("transport", THRIFT_TRANSPORTS)
async def test_generic_server_serves_a_typed_client(transport: str) -> None:
    mock = Mock()
    async with (
        serve_with(lambda svr: register_service(svr, json_thrift(RICH_IDL), mock), transport) as svr,
        thrift.new_client(rich_thrift.Rich, "rich", *client_opts(svr, transport)) as cli,
    ):
        reply = await cli.Echo(rich_thrift.RichRequest(big=2**40, data=b"\x01", color=1))
        assert (reply.big, reply.items[0].id, reply.items[0].ratio) == (2**41, 5, 0.0)
        assert await cli.Name("ann") == "mock ann"
        assert await cli.Ping(3) is None
        with pytest.raises(rich_thrift.RichError) as exc:  # Kitex's generic server cannot send these
            await cli.Echo(rich_thrift.RichRequest(big=-1))
        assert (exc.value.code, exc.value.reason) == (9, "mocked")
        with pytest.raises(RemoteOrNetworkError, match=r"success\.big: expected i64"):
            await cli.Echo(rich_thrift.RichRequest(big=-2))  # the handler's bad JSON: an error reply
        assert (await cli.Name("again")) == "mock again"
    method, body = mock.requests[0]
    assert method == "Echo"
    assert (
        json.loads(body)["big"] == 2**40
        and json.loads(body)["data"] == "AQ=="
        and json.loads(body)["color"] == 1
    )
    assert mock.requests[2] == ("Ping", "3")


@pytest.mark.parametrize("transport", ["ttheader", "framed"])
async def test_generic_server_answers_undecodable_bytes_and_serves_on(transport: str) -> None:
    mock = Mock()
    async with serve_with(lambda svr: register_service(svr, json_thrift(RICH_IDL), mock), transport) as svr:
        raw = new_client(binary_thrift("Rich"), "rich", *client_opts(svr, transport))
        async with raw:
            # Echo_args with field 1 a struct whose i64 is cut short: the server's body check refuses it
            # (a PROTOCOL_ERROR reply, then it closes that connection: README "Hostile bodies")
            with pytest.raises(RemoteOrNetworkError):
                await raw.call("Echo", b"\x0c\x00\x01\x0a\x00\x01\x00\x00")
        # and serves the next call (on a new connection: the client's pool may still hold the closed one)
        async with new_client(binary_thrift("Rich"), "rich", *client_opts(svr, transport)) as raw:
            body = await raw.call("Name", b"\x0b\x00\x01\x00\x00\x00\x02jo\x00")
            assert body == b"\x0b\x00\x00\x00\x00\x00\x07mock jo\x00"


@pytest.mark.parametrize("transport", THRIFT_TRANSPORTS)
async def test_binary_and_map_generic_clients_against_a_typed_server(transport: str) -> None:
    typed = TypedRich()
    async with serve_with(
        lambda svr: svr.register_service(thrift.service_info(rich_thrift.Rich), typed), transport
    ) as svr:
        async with new_client(
            binary_thrift("Rich", oneway=["Fire"]), "rich", *client_opts(svr, transport)
        ) as raw:
            if transport != "grpc":  # grpcio's server fails to encode a one-way reply (None): not ours
                assert await raw.call("Fire", b"\x0c\x00\x01\x0a\x00\x01" + bytes(8) + b"\x00\x00") is None
                await typed.fired.wait()
            # Name_args{1: "x"} -> Name_result{0: "hello x"}
            assert await raw.call("Name", b"\x0b\x00\x01\x00\x00\x00\x01x\x00") == (
                b"\x0b\x00\x00\x00\x00\x00\x07hello x\x00"
            )
        async with new_client(map_thrift(RICH_IDL), "rich", *client_opts(svr, transport)) as cli:
            reply = await cli.call("Echo", {"big": 2**63 - 1, "data": b"\xff", "by_id": {-1: {"id": 2}}})
            assert (reply["big"], reply["data"], reply["by_id"]) == (
                2**63 - 1,
                b"\xff",
                {-1: {"id": 2, "ratio": 0.0}},
            )


@pytest.mark.parametrize("transport", TTHEADER_TRANSPORTS)  # gRPC: handler.stream, see the pb tests
async def test_unknown_handler_gets_service_method_and_bytes(transport: str) -> None:
    seen: list[tuple[str, str, bytes]] = []

    class Catch:
        async def call(self, service: str, method: str, request: bytes) -> bytes:
            seen.append((service, method, request))
            return b"\x0b\x00\x00\x00\x00\x00\x02ok\x00"  # Name_result{success: "ok"}

    async with (
        serve_with(lambda svr: register_unknown_handler(svr, Catch()), transport) as svr,
        thrift.new_client(rich_thrift.Rich, "rich", *client_opts(svr, transport)) as cli,
    ):
        assert await cli.Name("zed") == "ok"
    service = "Rich" if transport != "framed" else "$UnknownService"  # Framed carries no service name
    assert seen == [(service, "Name", b"\x0b\x00\x01\x00\x00\x00\x03zed\x00")]
