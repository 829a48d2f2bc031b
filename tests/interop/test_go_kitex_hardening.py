"""Issue 23's Kitex-facing fixes against real Go Kitex (v0.16.3, built from interop/).

- Finding 7: a BizStatusError whose extra holds non-ASCII text, from both Python gRPC servers (its
  ``biz-extra`` trailer ASCII-escaped JSON) and from the TTHeader server (raw UTF-8, as Kitex writes
  it), reaches the Go Kitex client as the same map.
- Finding 11: the Go server's deadline reply ("biz error: context deadline exceeded") reaches the
  Python TTHeader client as RPCTimeoutError, also when it beats the client's own timer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import TransportProtocol, callopt, client, server
from kitex_grpc.errors import BizStatusError, RPCTimeoutError
from tests.interop.kitex_peer import GoServer, KitexConventionEcho, run_go_client
from tests.ttheader import support as tt
from tests.ttheader.test_server_deadline_reply import CLIENT_TIMEOUT, sends_shorter_timeout

pytestmark = pytest.mark.interop

# The Go client checks extra["k"] == "v" and prints the whole map it decoded.
EXTRA = {"k": "v", "ü": "✓", "emoji": "\U0001f600"}


class UnicodeExtraEcho(KitexConventionEcho):
    async def _behave(self, req: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        if req.message.startswith("biz:"):
            _, code, text = req.message.split(":", 2)
            raise BizStatusError(int(code), text, EXTRA)
        return await super()._behave(req)


class UnicodeExtraThriftEcho(tt.ThriftEcho):
    async def echo(self, req: Any) -> Any:
        if (req.message or "").startswith("biz:"):
            _, code, text = req.message.split(":", 2)
            raise BizStatusError(int(code), text, EXTRA)
        return await super().echo(req)


@pytest.mark.parametrize(
    "protocol", [TransportProtocol.GRPC, TransportProtocol.GRPC_H2], ids=lambda p: p.name
)
async def test_go_client_decodes_non_ascii_biz_extra_from_python_grpc_servers(
    kitex_bin: Path, protocol: TransportProtocol
) -> None:
    svr = echo_kitex.new_server(
        UnicodeExtraEcho(), server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(protocol)
    )
    await svr.start()
    try:
        results = await run_go_client(kitex_bin, svr.address, "grpc", "biz_error")
    finally:
        await svr.stop()
    biz = results["biz_error"]
    assert biz["ok"], biz
    assert (biz["biz_code"], biz["biz_message"], biz["biz_extra"]) == (1001, "bad thing", EXTRA)


async def test_go_client_decodes_non_ascii_biz_extra_from_python_ttheader_server(kitex_bin: Path) -> None:
    async with tt.serve(handler=UnicodeExtraThriftEcho()) as (svr, _):
        results = await run_go_client(kitex_bin, svr.address, "ttheader", "biz_error")
    biz = results["biz_error"]
    assert biz["ok"], biz
    assert biz["biz_extra"] == EXTRA


@pytest.mark.parametrize("transport", ["ttheader", "ttheader_framed"])
async def test_go_servers_deadline_reply_is_an_rpc_timeout(kitex_server: GoServer, transport: str) -> None:
    # Key 12 says 50 ms, the client's own timer 3 s: the Go handler's ctx ends first and its reply wins.
    async with tt.connect(
        kitex_server.thrift, transport, client.with_middleware(sends_shorter_timeout)
    ) as cli:
        started = time.monotonic()
        with pytest.raises(RPCTimeoutError) as info:
            await cli.echo(tt.Req(message="sleep:2000"), callopt.with_rpc_timeout(CLIENT_TIMEOUT))
        assert time.monotonic() - started < CLIENT_TIMEOUT / 2
        assert (
            info.value.remote
            and str(info.value) == "rpc timeout[remote]: biz error: context deadline exceeded"
        )
        assert (await cli.echo(tt.Req(message="after"))).message == "after"
