"""grpc.testing.TestService written with kitex-grpc, as the interop spec describes the server
(grpc/grpc doc/interop-test-descriptions.md, "Server")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from kitex_grpc import TransportProtocol, grpc_meta, rpcinfo, server
from kitex_grpc.errors import StatusError
from kitex_grpc.status import StatusCode

ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "gen" / "grpc" / "testing" / "test_kitex.py").exists():
    from kitex_grpc.codegen import generate

    generate([ROOT / "protos" / "grpc" / "testing" / "test.proto"], ROOT / "gen")

from gen.grpc.testing import test_kitex, test_pb2  # noqa: E402

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"


def _payload(size: int) -> test_pb2.Payload:
    return test_pb2.Payload(type=test_pb2.COMPRESSABLE, body=bytes(size))


def _echo_metadata() -> tuple[list[tuple[str, str | bytes]], list[tuple[str, str | bytes]]]:
    ri = rpcinfo.current()
    assert ri is not None
    initial = [(k, v) for k, v in ri.metadata if k == ECHO_INITIAL]
    trailing = [(k, v) for k, v in ri.metadata if k == ECHO_TRAILING]
    return initial, trailing


def _check_expect_compressed(expect: test_pb2.BoolValue | None) -> None:
    if expect is not None and expect.value and grpc_meta.last_message_compressed() is False:
        raise StatusError(StatusCode.INVALID_ARGUMENT, "expected a compressed request")


def _raise_status(status: test_pb2.EchoStatus) -> None:
    if status.code:
        raise StatusError(StatusCode.from_wire(status.code), status.message)


class TestService(test_kitex.TestServiceHandler):
    """The interop server; UnimplementedCall stays unimplemented on purpose."""

    async def EmptyCall(self, request: test_pb2.Empty) -> test_pb2.Empty:
        return test_pb2.Empty()

    async def UnaryCall(self, request: test_pb2.SimpleRequest) -> test_pb2.SimpleResponse:
        initial, trailing = _echo_metadata()
        if initial:
            grpc_meta.set_header(initial)  # goes out with the reply (or the status)
        if trailing:
            grpc_meta.set_trailer(trailing)
        _check_expect_compressed(request.expect_compressed if request.HasField("expect_compressed") else None)
        if request.HasField("response_compressed"):
            grpc_meta.set_send_compressor("gzip" if request.response_compressed.value else "identity")
        if request.HasField("response_status"):
            _raise_status(request.response_status)
        return test_pb2.SimpleResponse(payload=_payload(request.response_size))

    async def StreamingInputCall(
        self, requests: AsyncIterator[test_pb2.StreamingInputCallRequest]
    ) -> test_pb2.StreamingInputCallResponse:
        total = 0
        async for request in requests:
            if request.HasField("expect_compressed"):
                _check_expect_compressed(request.expect_compressed)
            total += len(request.payload.body)
        return test_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    async def StreamingOutputCall(
        self, request: test_pb2.StreamingOutputCallRequest
    ) -> AsyncIterator[test_pb2.StreamingOutputCallResponse]:
        params = list(request.response_parameters)
        if any(p.HasField("compressed") and p.compressed.value for p in params):
            grpc_meta.set_send_compressor("gzip")
        for p in params:
            if p.interval_us:
                await asyncio.sleep(p.interval_us / 1e6)  # the spec's pause between replies
            if p.HasField("compressed") and not p.compressed.value:
                grpc_meta.disable_next_message_compression()
            yield test_pb2.StreamingOutputCallResponse(payload=_payload(p.size))
        if request.HasField("response_status"):
            _raise_status(request.response_status)

    async def FullDuplexCall(
        self, requests: AsyncIterator[test_pb2.StreamingOutputCallRequest]
    ) -> AsyncIterator[test_pb2.StreamingOutputCallResponse]:
        initial, trailing = _echo_metadata()
        if initial:
            await grpc_meta.send_header(initial)  # at once, as grpc-go's server does
        if trailing:
            grpc_meta.set_trailer(trailing)
        async for request in requests:
            if request.HasField("response_status"):
                _raise_status(request.response_status)
            for p in request.response_parameters:
                if p.interval_us:
                    await asyncio.sleep(p.interval_us / 1e6)
                yield test_pb2.StreamingOutputCallResponse(payload=_payload(p.size))

    async def HalfDuplexCall(
        self, requests: AsyncIterator[test_pb2.StreamingOutputCallRequest]
    ) -> AsyncIterator[test_pb2.StreamingOutputCallResponse]:
        buffered = [request async for request in requests]
        for request in buffered:
            for p in request.response_parameters:
                yield test_pb2.StreamingOutputCallResponse(payload=_payload(p.size))


@asynccontextmanager
async def serving(protocol: TransportProtocol) -> AsyncIterator[str]:
    """Our TestService on a free loopback port over ``protocol``; yields its ``host:port``."""
    svr = test_kitex.new_test_service_server(
        TestService(), server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(protocol)
    )
    await svr.start()
    try:
        yield svr.address
    finally:
        await svr.stop()
