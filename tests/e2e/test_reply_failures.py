"""A reply that cannot be sent as built never leaves the call open (issue 23, finding 7).

A BizStatusError whose ``extra`` holds non-ASCII text travels over both gRPC servers (its
``biz-extra`` trailer is ASCII-escaped JSON) and comes back as the same dict on both clients. A
failure while the h2 server builds the trailers ends the stream with INTERNAL at once: as plain
INTERNAL trailers, or as RST_STREAM(INTERNAL_ERROR) when even those cannot be built. Real sockets on
127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from kitex_grpc import TransportProtocol, client, rpcinfo, server
from kitex_grpc.errors import BizStatusError, KitexError
from kitex_grpc.protocol import grpc_headers
from kitex_grpc.status import StatusCode
from tests.support import EchoService, Reply, Req, connect, serve

GRPC, H2 = TransportProtocol.GRPC, TransportProtocol.GRPC_H2
PAIRS = [(s, c) for s in (GRPC, H2) for c in (GRPC, H2)]
PROMPT = 5.0  # a call the server ends must end well before this; a hung one would wait forever
EXTRA = {"ü": "✓", "k": "v", "emoji": "\U0001f600", "ctl": "a\x7fb\n"}


class UnicodeBiz(EchoService):
    """``unicode-biz``: a BizStatusError whose message and extra are not ASCII."""

    async def Unary(self, request: Req) -> Reply:
        if request.message == "unicode-biz":
            raise BizStatusError(1001, "schlecht ü", EXTRA)
        return await super().Unary(request)

    async def ServerStream(self, request: Req) -> Any:
        yield Reply(message="first", seq=0)
        raise BizStatusError(1002, "später", EXTRA)


@pytest.mark.parametrize(("server_tp", "client_tp"), PAIRS, ids=lambda tp: tp.name)
async def test_biz_status_error_with_non_ascii_extra_round_trips(
    server_tp: TransportProtocol, client_tp: TransportProtocol
) -> None:
    async with (
        serve(server.with_transport_protocol(server_tp), handler=UnicodeBiz()) as (svr, _),
        connect(svr, client.with_transport_protocol(client_tp)) as cli,
    ):
        async with asyncio.timeout(PROMPT):
            with pytest.raises(BizStatusError) as unary:
                await cli.Unary(Req(message="unicode-biz"))
            got = [r async for r in _until_error(cli.ServerStream(Req(message="s")))]
        assert (unary.value.code, unary.value.message, unary.value.extra) == (1001, "schlecht ü", EXTRA)
        assert unary.value.grpc_status is StatusCode.INTERNAL
        assert got[:-1] == [0]
        stream_error = got[-1]
        assert isinstance(stream_error, BizStatusError)
        assert (stream_error.code, stream_error.message, stream_error.extra) == (1002, "später", EXTRA)
        # The connection serves on.
        assert (await cli.Unary(Req(message="after"))).message == "after"


async def _until_error(stream: Any) -> Any:
    try:
        async for reply in stream:
            yield reply.seq
    except KitexError as exc:
        yield exc


class _FailingTrailers:
    """Replaces grpc_headers.build_trailers: the next ``budget`` non-OK trailer lists raise."""

    def __init__(self) -> None:
        self.budget = 0
        self.raised = 0
        self._build = grpc_headers.build_trailers

    def __call__(self, status: Any, *args: Any, **kwargs: Any) -> Any:
        if status != StatusCode.OK and self.budget > 0:
            self.budget -= 1
            self.raised += 1
            raise RuntimeError("injected failure while building the trailers")
        return self._build(status, *args, **kwargs)


@pytest.mark.parametrize("client_tp", [GRPC, H2], ids=lambda tp: tp.name)
@pytest.mark.parametrize(
    "failures", [1, 1_000_000], ids=["status-fails-then-plain-internal", "every-status-fails-rst"]
)
async def test_h2_server_ends_the_stream_with_internal_when_sending_the_status_fails(
    client_tp: TransportProtocol,
    failures: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inject = _FailingTrailers()
    async with (
        serve(server.with_transport_protocol(H2)) as (svr, _),
        connect(svr, client.with_transport_protocol(client_tp)) as cli,
    ):
        assert (await cli.Unary(Req(message="warm"))).message == "warm"
        monkeypatch.setattr(grpc_headers, "build_trailers", inject)
        with caplog.at_level(logging.ERROR, logger="kitex_grpc.transport.h2"):
            for message in ("biz:7:no", "error:boom"):
                inject.budget = failures
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(KitexError) as info:
                    async with asyncio.timeout(PROMPT):  # no rpc timeout: a hung call would hang
                        await cli.Unary(Req(message=message))
                assert not isinstance(info.value, BizStatusError)
                assert info.value.grpc_status is StatusCode.INTERNAL, info.value
                assert loop.time() - started < PROMPT
        assert inject.raised == (2 if failures == 1 else 4)  # the status, then the plain INTERNAL
        assert sum("ending it with INTERNAL" in r.getMessage() for r in caplog.records) == 2
        monkeypatch.undo()
        assert (await cli.Unary(Req(message="after"))).message == "after"


class BadTrailers(EchoService):
    """Appends trailing metadata no HTTP/2 header can carry to an otherwise good reply."""

    async def Unary(self, request: Req) -> Reply:
        ri = rpcinfo.current()
        assert ri is not None
        ri.response_metadata.append(("x-bad", "ü\n"))
        return Reply(message=request.message)


@pytest.mark.parametrize(("server_tp", "client_tp"), PAIRS, ids=lambda tp: tp.name)
async def test_trailers_that_cannot_be_sent_end_the_call_with_internal(
    server_tp: TransportProtocol, client_tp: TransportProtocol
) -> None:
    async with (
        serve(server.with_transport_protocol(server_tp), handler=BadTrailers()) as (svr, _),
        connect(svr, client.with_transport_protocol(client_tp)) as cli,
    ):
        with pytest.raises(KitexError) as info:
            async with asyncio.timeout(PROMPT):
                await cli.Unary(Req(message="x"))
        assert info.value.grpc_status is StatusCode.INTERNAL and info.value.remote
