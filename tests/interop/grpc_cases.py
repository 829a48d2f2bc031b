"""The gRPC interop client cases (grpc/grpc doc/interop-test-descriptions.md) with a kitex-grpc client.

Each case takes a ``TestServiceClient`` / ``UnimplementedServiceClient`` pair and raises
``AssertionError`` when the server's behaviour differs from the spec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from kitex_grpc import callopt
from kitex_grpc.errors import CanceledError, KitexError, RPCTimeoutError
from kitex_grpc.status import StatusCode
from tests.interop.grpc_peer import CASES
from tests.interop.grpc_testservice import test_kitex, test_pb2

Clients = tuple[test_kitex.TestServiceClient, test_kitex.UnimplementedServiceClient]
Case = Callable[[test_kitex.TestServiceClient, test_kitex.UnimplementedServiceClient], Awaitable[None]]

ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"


def payload(size: int) -> test_pb2.Payload:
    return test_pb2.Payload(type=test_pb2.COMPRESSABLE, body=bytes(size))


def output_request(*sizes: int, req_size: int = 0) -> test_pb2.StreamingOutputCallRequest:
    return test_pb2.StreamingOutputCallRequest(
        response_type=test_pb2.COMPRESSABLE,
        response_parameters=[test_pb2.ResponseParameters(size=s) for s in sizes],
        payload=payload(req_size) if req_size else None,
    )


def status_of(exc: KitexError) -> int:
    return int(exc.grpc_status)


async def empty_unary(tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient) -> None:
    reply = await tc.EmptyCall(test_pb2.Empty())
    assert reply == test_pb2.Empty()


async def large_unary(tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient) -> None:
    reply = await tc.UnaryCall(
        test_pb2.SimpleRequest(
            response_type=test_pb2.COMPRESSABLE, response_size=314159, payload=payload(271828)
        )
    )
    assert reply.payload.body == bytes(314159)


async def client_streaming(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    stream = await tc.StreamingInputCall()
    for size in (27182, 8, 1828, 45904):
        await stream.send(test_pb2.StreamingInputCallRequest(payload=payload(size)))
    reply = await stream.close_and_recv()
    assert reply.aggregated_payload_size == 74922


async def server_streaming(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    sizes = [len(r.payload.body) async for r in tc.StreamingOutputCall(output_request(31415, 9, 2653, 58979))]
    assert sizes == [31415, 9, 2653, 58979]


async def ping_pong(tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient) -> None:
    stream = await tc.FullDuplexCall()
    for req_size, resp_size in ((27182, 31415), (8, 9), (1828, 2653), (45904, 58979)):
        await stream.send(output_request(resp_size, req_size=req_size))
        reply = await stream.recv()
        assert len(reply.payload.body) == resp_size
    await stream.close_send()
    with pytest.raises(EOFError):
        await stream.recv()


async def empty_stream(tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient) -> None:
    stream = await tc.FullDuplexCall()
    await stream.close_send()
    with pytest.raises(EOFError):
        await stream.recv()


async def timeout_on_sleeping_server(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    # The request asks for no reply: the server waits for the next request, past the deadline.
    stream = await tc.FullDuplexCall(callopt.with_rpc_timeout(0.001))
    with pytest.raises(RPCTimeoutError):
        await stream.send(output_request(req_size=27182))
        await stream.recv()


async def cancel_after_begin(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    stream = await tc.StreamingInputCall()
    stream.cancel()
    with pytest.raises(CanceledError) as info:
        await stream.close_and_recv()
    assert info.value.grpc_status is StatusCode.CANCELLED


async def cancel_after_first_response(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    stream = await tc.FullDuplexCall()
    await stream.send(output_request(31415, req_size=27182))
    reply = await stream.recv()
    assert len(reply.payload.body) == 31415
    stream.cancel()
    with pytest.raises(CanceledError):
        await stream.recv()


async def custom_metadata(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    sent = (callopt.with_metadata(*ECHO_INITIAL), callopt.with_metadata(*ECHO_TRAILING))
    headers: list[tuple[str, str | bytes]] = []
    trailers: list[tuple[str, str | bytes]] = []
    reply = await tc.UnaryCall(
        test_pb2.SimpleRequest(
            response_type=test_pb2.COMPRESSABLE, response_size=314159, payload=payload(271828)
        ),
        *sent,
        callopt.with_grpc_header(headers),
        callopt.with_grpc_trailer(trailers),
    )
    assert len(reply.payload.body) == 314159
    assert ECHO_INITIAL in headers and ECHO_TRAILING not in headers, headers
    assert ECHO_TRAILING in trailers and ECHO_INITIAL not in trailers, trailers

    stream = await tc.FullDuplexCall(*sent)
    await stream.send(output_request(314159, req_size=271828))
    reply = await stream.recv()
    assert len(reply.payload.body) == 314159
    assert ECHO_INITIAL in stream.ri.response_headers, stream.ri.response_headers
    await stream.close_send()
    with pytest.raises(EOFError):
        await stream.recv()
    assert ECHO_TRAILING in stream.ri.response_trailers, stream.ri.response_trailers
    assert ECHO_INITIAL not in stream.ri.response_trailers


async def _expect_status(call: Awaitable[object], code: StatusCode, message: str) -> None:
    with pytest.raises(KitexError) as info:
        await call
    assert info.value.grpc_status is code, info.value
    assert getattr(info.value, "detail", None) == message or str(info.value).endswith(message), info.value


async def status_code_and_message(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    status = test_pb2.EchoStatus(code=2, message="test status message")
    await _expect_status(
        tc.UnaryCall(test_pb2.SimpleRequest(response_status=status)), StatusCode.UNKNOWN, status.message
    )
    stream = await tc.FullDuplexCall()
    await stream.send(test_pb2.StreamingOutputCallRequest(response_status=status))
    await stream.close_send()
    await _expect_status(stream.recv(), StatusCode.UNKNOWN, status.message)


async def special_status_message(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    status = test_pb2.EchoStatus(code=2, message=SPECIAL_MESSAGE)
    await _expect_status(
        tc.UnaryCall(test_pb2.SimpleRequest(response_status=status)), StatusCode.UNKNOWN, SPECIAL_MESSAGE
    )


async def unimplemented_method(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    with pytest.raises(KitexError) as info:
        await tc.UnimplementedCall(test_pb2.Empty())
    assert info.value.grpc_status is StatusCode.UNIMPLEMENTED, info.value


async def unimplemented_service(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    with pytest.raises(KitexError) as info:
        await uc.UnimplementedCall(test_pb2.Empty())
    assert info.value.grpc_status is StatusCode.UNIMPLEMENTED, info.value


def _bool(value: bool) -> test_pb2.BoolValue:
    return test_pb2.BoolValue(value=value)


async def client_compressed_unary(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    def request(expect: bool) -> test_pb2.SimpleRequest:
        return test_pb2.SimpleRequest(
            response_type=test_pb2.COMPRESSABLE,
            response_size=314159,
            payload=payload(271828),
            expect_compressed=_bool(expect),
        )

    with pytest.raises(KitexError) as info:  # the probe: an uncompressed request that claims otherwise
        await tc.UnaryCall(request(True))
    assert info.value.grpc_status is StatusCode.INVALID_ARGUMENT, info.value
    reply = await tc.UnaryCall(request(True), callopt.with_compression("gzip"))
    assert len(reply.payload.body) == 314159
    reply = await tc.UnaryCall(request(False))
    assert len(reply.payload.body) == 314159


async def server_compressed_unary(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    for compressed in (True, False):
        reply = await tc.UnaryCall(
            test_pb2.SimpleRequest(
                response_type=test_pb2.COMPRESSABLE,
                response_size=314159,
                payload=payload(271828),
                response_compressed=_bool(compressed),
            )
        )
        assert len(reply.payload.body) == 314159


async def client_compressed_streaming(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    probe = await tc.StreamingInputCall()
    await probe.send(
        test_pb2.StreamingInputCallRequest(payload=payload(27182), expect_compressed=_bool(True))
    )
    with pytest.raises(KitexError) as info:
        await probe.close_and_recv()
    assert info.value.grpc_status is StatusCode.INVALID_ARGUMENT, info.value

    stream = await tc.StreamingInputCall(callopt.with_compression("gzip"))
    await stream.send(
        test_pb2.StreamingInputCallRequest(payload=payload(27182), expect_compressed=_bool(True))
    )
    stream.disable_next_message_compression()
    await stream.send(
        test_pb2.StreamingInputCallRequest(payload=payload(45904), expect_compressed=_bool(False))
    )
    reply = await stream.close_and_recv()
    assert reply.aggregated_payload_size == 73086


async def server_compressed_streaming(
    tc: test_kitex.TestServiceClient, uc: test_kitex.UnimplementedServiceClient
) -> None:
    request = test_pb2.StreamingOutputCallRequest(
        response_type=test_pb2.COMPRESSABLE,
        response_parameters=[
            test_pb2.ResponseParameters(size=31415, compressed=_bool(True)),
            test_pb2.ResponseParameters(size=92653, compressed=_bool(False)),
        ],
    )
    sizes = [len(r.payload.body) async for r in tc.StreamingOutputCall(request)]
    assert sizes == [31415, 92653]


CASE_FUNCTIONS: dict[str, Case] = {name: globals()[name] for name in CASES}
