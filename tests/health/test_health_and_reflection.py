"""grpc.health.v1 and server reflection, called by plain grpcio stubs, on the grpcio and h2 transports."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2

from kitex_grpc import server
from kitex_grpc.health import HealthServer, ServingStatus
from tests.support import serve

TRANSPORTS = ["GRPC", "GRPC_H2"]


def channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address.replace("0.0.0.0", "127.0.0.1"))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_check(stubs: SimpleNamespace, transport: str) -> None:
    health = HealthServer()
    opts = (server.with_health(health), server.with_transport_protocol(transport))
    async with serve(*opts) as (svr, _), channel(svr.address) as ch:
        stub = stubs.health_grpc.HealthStub(ch)
        Request = stubs.health_pb2.HealthCheckRequest
        SERVING = stubs.health_pb2.HealthCheckResponse.SERVING
        assert (await stub.Check(Request(), timeout=5)).status == SERVING
        assert (await stub.Check(Request(service="echo.v1.Echo"), timeout=5)).status == SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(Request(service="no.such.Service"), timeout=5)
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
        health.set_status("echo.v1.Echo", ServingStatus.NOT_SERVING)
        reply = await stub.Check(Request(service="echo.v1.Echo"), timeout=5)
        assert reply.status == stubs.health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_watch_follows_changes_and_drain(stubs: SimpleNamespace, transport: str) -> None:
    health = HealthServer()
    Response = stubs.health_pb2.HealthCheckResponse
    opts = (
        server.with_health(health),
        server.with_transport_protocol(transport),
        server.with_exit_wait_time(5),
    )
    async with serve(*opts) as (svr, _), channel(svr.address) as ch:
        stub = stubs.health_grpc.HealthStub(ch)
        call = stub.Watch(stubs.health_pb2.HealthCheckRequest(service="echo.v1.Echo"), timeout=10)
        stream = call.__aiter__()
        assert (await asyncio.wait_for(stream.__anext__(), 5)).status == Response.SERVING
        health.set_status("echo.v1.Echo", ServingStatus.NOT_SERVING)
        assert (await asyncio.wait_for(stream.__anext__(), 5)).status == Response.NOT_SERVING
        health.set_status("echo.v1.Echo", ServingStatus.SERVING)
        assert (await asyncio.wait_for(stream.__anext__(), 5)).status == Response.SERVING
        # Draining: Watch sees NOT_SERVING, then the stream ends, so stop() need not wait for it.
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopping = asyncio.create_task(svr.stop())
        assert (await asyncio.wait_for(stream.__anext__(), 5)).status == Response.NOT_SERVING
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(stream.__anext__(), 5)
        await asyncio.wait_for(stopping, 5)
        assert loop.time() - started < 4.0  # not the 5 s exit wait time
        assert health.status("") is ServingStatus.NOT_SERVING
        health.set_status("", ServingStatus.SERVING)  # ignored once shut down
        assert health.status("") is ServingStatus.NOT_SERVING


async def test_watch_unknown_service(stubs: SimpleNamespace) -> None:
    async with serve(server.with_health()) as (svr, _), channel(svr.address) as ch:
        stub = stubs.health_grpc.HealthStub(ch)
        call = stub.Watch(stubs.health_pb2.HealthCheckRequest(service="x.Y"), timeout=10)
        first = await asyncio.wait_for(call.__aiter__().__anext__(), 5)
        assert first.status == stubs.health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        call.cancel()


async def _reflect(stub: Any, request: Any) -> Any:
    call = stub.ServerReflectionInfo(timeout=10)
    await call.write(request)
    await call.done_writing()
    replies = [r async for r in call]
    assert len(replies) == 1
    return replies[0]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection(stubs: SimpleNamespace, transport: str, version: str) -> None:
    pb2 = stubs.refl_pb2 if version == "v1" else stubs.refl_alpha_pb2
    grpc_mod = stubs.refl_grpc if version == "v1" else stubs.refl_alpha_grpc
    Request = pb2.ServerReflectionRequest
    opts = (server.with_reflection(), server.with_health(), server.with_transport_protocol(transport))
    async with serve(*opts) as (svr, _), channel(svr.address) as ch:
        stub = grpc_mod.ServerReflectionStub(ch)
        listed = await _reflect(stub, Request(list_services=""))
        names = [s.name for s in listed.list_services_response.service]
        assert names == sorted(
            [
                "echo.v1.Echo",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ]
        )
        by_symbol = await _reflect(stub, Request(file_containing_symbol="echo.v1.Echo"))
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in by_symbol.file_descriptor_response.file_descriptor_proto
        ]
        assert files[0].name == "echo/v1/echo.proto"
        assert [s.name for s in files[0].service] == ["Echo"]
        assert {m.name for m in files[0].service[0].method} == {
            "Unary",
            "ServerStream",
            "ClientStream",
            "Bidi",
        }
        by_name = await _reflect(stub, Request(file_by_filename="grpc/health/v1/health.proto"))
        (health_file,) = by_name.file_descriptor_response.file_descriptor_proto
        assert descriptor_pb2.FileDescriptorProto.FromString(health_file).package == "grpc.health.v1"
        method = await _reflect(stub, Request(file_containing_symbol="echo.v1.EchoRequest"))
        assert (
            descriptor_pb2.FileDescriptorProto.FromString(
                method.file_descriptor_response.file_descriptor_proto[0]
            ).name
            == "echo/v1/echo.proto"
        )
        missing = await _reflect(stub, Request(file_containing_symbol="no.Such"))
        assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
        assert missing.original_request.file_containing_symbol == "no.Such"


@pytest.mark.parametrize(
    ("proto", "built"),
    [
        ("grpc/health/v1/health.proto", "kitex_grpc.health._proto:HEALTH_FILE"),
        ("grpc/reflection/v1/reflection.proto", "kitex_grpc.reflection._proto:BUILT_V1"),
        ("grpc/reflection/v1alpha/reflection.proto", "kitex_grpc.reflection._proto:BUILT_V1ALPHA"),
    ],
)
def test_descriptors_built_in_code_match_the_protos(tmp_path: Any, proto: str, built: str) -> None:
    import importlib

    from grpc_tools import protoc

    from tests.health.conftest import ROOT

    out = tmp_path / "set.pb"
    assert protoc.main(["protoc", f"-I{ROOT / 'protos'}", f"--descriptor_set_out={out}", proto]) == 0
    (from_protoc,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    module, _, attr = built.partition(":")
    ours = getattr(importlib.import_module(module), attr)
    ours = ours if isinstance(ours, descriptor_pb2.FileDescriptorProto) else ours.proto
    for fdp in (from_protoc, ours):
        for message in fdp.message_type:
            for field in message.field:
                field.ClearField("json_name")
    assert ours == from_protoc
