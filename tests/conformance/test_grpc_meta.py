"""Response metadata and compression from handlers (kitex_grpc.grpc_meta), over every pairing of the
gRPC client and server transports, on real loopback sockets."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import TransportProtocol, callopt, client, grpc_meta, server
from kitex_grpc.errors import KitexError, StatusError
from kitex_grpc.status import StatusCode
from tests.support import Reply, Req, connect, serve

GRPC = TransportProtocol.GRPC
H2 = TransportProtocol.GRPC_H2
PAIRS = [(H2, H2), (H2, GRPC), (GRPC, H2), (GRPC, GRPC)]

HEADERS = [("x-h", "hv"), ("x-h-bin", b"\x00\xff\n")]
TRAILERS = [("x-t", "tv"), ("x-t-bin", b"\x01\x00")]


class MetaEcho(echo_kitex.EchoHandler):
    """Sets HEADERS and TRAILERS on every call; ``fail`` in a message ends the call NOT_FOUND."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    @staticmethod
    def _fail_if_asked(req: Req) -> None:
        if req.message == "fail":
            raise StatusError(StatusCode.NOT_FOUND, "nope")

    async def Unary(self, request: Req) -> Reply:
        grpc_meta.set_header(HEADERS[:1])
        grpc_meta.set_header(dict(HEADERS[1:]))
        grpc_meta.set_trailer(TRAILERS)
        self._fail_if_asked(request)
        return Reply(message=request.message)

    async def ServerStream(self, request: Req) -> AsyncIterator[Reply]:
        grpc_meta.set_header(HEADERS)
        grpc_meta.set_trailer(TRAILERS)
        yield Reply(message="first")
        try:  # the headers went out with the first message
            grpc_meta.set_header([("x-late", "v")])
        except grpc_meta.HeaderSentError as exc:
            self.errors.append(type(exc).__name__)
        self._fail_if_asked(request)
        yield Reply(message="second")

    async def ClientStream(self, requests: AsyncIterator[Req]) -> Reply:
        got = [r.message async for r in requests]
        grpc_meta.set_header(HEADERS)
        grpc_meta.set_trailer(TRAILERS)
        if "fail" in got:
            raise StatusError(StatusCode.NOT_FOUND, "nope")
        return Reply(message=",".join(got))

    async def Bidi(self, requests: AsyncIterator[Req]) -> AsyncIterator[Reply]:
        await grpc_meta.send_header(HEADERS)  # before any message
        try:
            await grpc_meta.send_header()
        except grpc_meta.HeaderSentError as exc:
            self.errors.append(type(exc).__name__)
        grpc_meta.set_trailer(TRAILERS)
        async for r in requests:
            self._fail_if_asked(r)
            yield Reply(message=r.message)


@pytest.fixture(params=PAIRS, ids=lambda p: f"{p[0].name}->{p[1].name}")
async def meta_client(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[echo_kitex.EchoClient, MetaEcho]]:
    client_tp, server_tp = request.param
    handler = MetaEcho()
    async with (
        serve(server.with_transport_protocol(server_tp), handler=handler) as (svr, _),  # type: ignore[arg-type]
        connect(svr, client.with_transport_protocol(client_tp)) as cli,
    ):
        yield cli, handler


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "failed"])
async def test_unary_headers_and_trailers_apart(
    meta_client: tuple[echo_kitex.EchoClient, MetaEcho], fail: bool
) -> None:
    cli, _ = meta_client
    headers: list[tuple[str, str | bytes]] = []
    trailers: list[tuple[str, str | bytes]] = []
    opts = (callopt.with_grpc_header(headers), callopt.with_grpc_trailer(trailers))
    if fail:
        with pytest.raises(KitexError) as info:
            await cli.Unary(Req(message="fail"), *opts)
        assert info.value.grpc_status is StatusCode.NOT_FOUND
    else:
        assert (await cli.Unary(Req(message="x"), *opts)).message == "x"
    assert headers == HEADERS
    assert trailers == TRAILERS


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "failed"])
async def test_server_stream_headers_then_trailers(
    meta_client: tuple[echo_kitex.EchoClient, MetaEcho], fail: bool
) -> None:
    cli, handler = meta_client
    stream = cli.ServerStream(Req(message="fail" if fail else "x"))
    assert (await stream.recv()).message == "first"
    assert stream.ri is not None
    assert stream.ri.response_headers == HEADERS  # with the first message, before the end
    if fail:
        with pytest.raises(KitexError) as info:
            await stream.recv()
        assert info.value.grpc_status is StatusCode.NOT_FOUND
    else:
        assert (await stream.recv()).message == "second"
        with pytest.raises(EOFError):
            await stream.recv()
    assert stream.ri.response_headers == HEADERS
    assert stream.ri.response_trailers == TRAILERS
    assert handler.errors == ["HeaderSentError"]


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "failed"])
async def test_client_stream_headers_without_a_message_before_the_status(
    meta_client: tuple[echo_kitex.EchoClient, MetaEcho], fail: bool
) -> None:
    """Headers set by a handler that then fails still arrive as headers, not in the trailers."""
    cli, _ = meta_client
    stream = await cli.ClientStream()
    await stream.send(Req(message="fail" if fail else "a"))
    if fail:
        with pytest.raises(KitexError) as info:
            await stream.close_and_recv()
        assert info.value.grpc_status is StatusCode.NOT_FOUND
    else:
        assert (await stream.close_and_recv()).message == "a"
    assert stream.ri.response_headers == HEADERS
    assert stream.ri.response_trailers == TRAILERS


async def test_bidi_send_header_before_any_message(
    meta_client: tuple[echo_kitex.EchoClient, MetaEcho],
) -> None:
    cli, handler = meta_client
    headers: list[tuple[str, str | bytes]] = []
    stream = await cli.Bidi(callopt.with_grpc_header(headers))
    await stream.send(Req(message="a"))
    assert (await stream.recv()).message == "a"
    assert headers == HEADERS and stream.ri.response_headers is headers
    await stream.close_send()
    with pytest.raises(EOFError):
        await stream.recv()
    assert stream.ri.response_trailers == TRAILERS
    assert handler.errors == ["HeaderSentError"]


@pytest.mark.parametrize(
    ("metadata", "complaint"),
    [
        ({"X-Upper": "v"}, "only lower-case"),
        ({"grpc-status": "0"}, "reserved"),
        ({"content-type": "text/plain"}, "reserved"),
        ({":path": "/x"}, "only lower-case"),
        ({"x-blob-bin": "text"}, "must be bytes"),
        ({"x-text": b"bytes"}, "printable ASCII"),
        ({"x-text": "caf\u00e9"}, "printable ASCII"),
        ({"": "v"}, "non-empty"),
    ],
)
async def test_invalid_metadata_is_refused_with_its_key(
    metadata: dict[str, str | bytes], complaint: str
) -> None:
    seen: list[str] = []

    class Handler(echo_kitex.EchoHandler):
        async def Unary(self, request: Req) -> Reply:
            for fn in (grpc_meta.set_header, grpc_meta.set_trailer):
                try:
                    fn(metadata)
                except grpc_meta.MetadataError as exc:
                    seen.append(str(exc))
            return Reply(message="ok")

    async with serve(server.with_transport_protocol(H2), handler=Handler()) as (svr, _), connect(svr) as cli:  # type: ignore[arg-type]
        assert (await cli.Unary(Req())).message == "ok"
    assert len(seen) == 2 and all(complaint in s for s in seen), seen


def test_outside_a_handler_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="inside a handler"):
        grpc_meta.set_header({"x-a": "b"})
    with pytest.raises(RuntimeError, match="inside a handler"):
        grpc_meta.request_encoding()


@pytest.mark.parametrize("server_tp", [H2, GRPC], ids=lambda p: p.name)
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_handler_reads_request_encoding_and_chooses_the_reply_one(
    server_tp: TransportProtocol, encoding: str
) -> None:
    seen: list[object] = []

    class Handler(echo_kitex.EchoHandler):
        async def Unary(self, request: Req) -> Reply:
            seen.append((grpc_meta.request_encoding(), grpc_meta.accepted_encodings()))
            seen.append(grpc_meta.last_message_compressed())
            grpc_meta.set_send_compressor("identity" if encoding == "gzip" else "gzip")
            return Reply(payload=request.payload)

    async with (
        serve(server.with_transport_protocol(server_tp), handler=Handler()) as (svr, _),  # type: ignore[arg-type]
        connect(svr, client.with_transport_protocol(H2), client.with_compression(encoding)) as cli,
    ):
        assert (await cli.Unary(Req(payload=b"z" * 10_000))).payload == b"z" * 10_000
    if server_tp is H2:
        assert seen == [(encoding, ("identity", "deflate", "gzip")), True]
    else:  # grpcio inflates before the handler and does not say how the request came
        assert seen == [(None, ()), None]


async def test_h2_per_message_compression_both_ways() -> None:
    """A stream sends one message compressed and the next not, in each direction (h2 transports)."""
    flags: list[bool | None] = []

    class Handler(echo_kitex.EchoHandler):
        async def Bidi(self, requests: AsyncIterator[Req]) -> AsyncIterator[Reply]:
            async for r in requests:
                flags.append(grpc_meta.last_message_compressed())
                if r.message == "plain":
                    grpc_meta.disable_next_message_compression()
                yield Reply(message=r.message, payload=r.payload)

    async with (
        serve(server.with_transport_protocol(H2), handler=Handler()) as (svr, _),  # type: ignore[arg-type]
        connect(svr, client.with_transport_protocol(H2), client.with_compression("gzip")) as cli,
    ):
        stream = await cli.Bidi()
        await stream.send(Req(message="packed", payload=b"p" * 5000))
        assert (await stream.recv()).payload == b"p" * 5000
        stream.disable_next_message_compression()
        await stream.send(Req(message="plain", payload=b"q" * 5000))
        assert (await stream.recv()).payload == b"q" * 5000
        await stream.send(Req(message="packed", payload=b"r" * 5000))
        assert (await stream.recv()).payload == b"r" * 5000
        await stream.close_send()
        with pytest.raises(EOFError):
            await stream.recv()
    assert flags == [True, False, True]


async def test_grpcio_client_cannot_skip_compression_per_message() -> None:
    async with (
        serve(server.with_transport_protocol(H2)) as (svr, _),
        connect(svr, client.with_transport_protocol(GRPC), client.with_compression("gzip")) as cli,
    ):
        stream = await cli.Bidi()
        with pytest.raises(NotImplementedError):
            stream.disable_next_message_compression()
        stream.cancel()


@pytest.mark.parametrize("server_tp", [H2, GRPC], ids=lambda p: p.name)
async def test_a_served_call_is_freed_without_the_cyclic_gc(server_tp: TransportProtocol) -> None:
    """The call's task holds the call in its context (grpc_meta) and the call held the task: a cycle
    that only the cyclic GC freed, which cost about 7 us a call on the unary benchmark."""
    tasks: list[weakref.ref[asyncio.Task[object]]] = []

    class Handler(echo_kitex.EchoHandler):
        async def Unary(self, request: Req) -> Reply:
            task = asyncio.current_task()
            assert task is not None
            tasks.append(weakref.ref(task))
            grpc_meta.set_trailer({"x-t": "v"})
            return Reply(message="ok")

    async with (
        serve(server.with_transport_protocol(server_tp), handler=Handler()) as (svr, _),
        connect(svr) as cli,
    ):  # type: ignore[arg-type]
        gc.disable()
        try:
            assert (await cli.Unary(Req())).message == "ok"
            for _ in range(100):  # the server task ends a few loop turns after the reply went out
                if tasks[0]() is None:
                    break
                await asyncio.sleep(0)
            assert tasks[0]() is None
        finally:
            gc.enable()
