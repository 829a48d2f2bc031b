"""Wire interop with plain grpcio peers that run in their own process and know nothing of kitex_grpc.

Both directions, on both gRPC transports: a plain grpc.aio client calls our server (grpcio's or our
own HTTP/2, GRPC_H2), and our client on either transport calls a plain grpc.aio server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gen.echo.v1 import echo_kitex
from kitex_grpc import TransportProtocol, callopt, client, metainfo, server
from kitex_grpc.errors import BizStatusError, RemoteOrNetworkError, RPCTimeoutError
from kitex_grpc.status import StatusCode
from tests.support import Req, serve

PEER = Path(__file__).with_name("plain_grpc_peer.py")

TRANSPORTS = pytest.mark.parametrize(
    "protocol", [TransportProtocol.GRPC, TransportProtocol.GRPC_H2], ids=["grpcio", "grpc_h2"]
)


@TRANSPORTS
async def test_plain_grpcio_client_calls_our_server(protocol: TransportProtocol) -> None:
    async with serve(server.with_transport_protocol(protocol)) as (svr, _):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(PEER), "client", svr.address, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    cases = {c["case"]: c for c in map(json.loads, out.decode().splitlines())}
    assert cases["unary"] == {"case": "unary", "message": "hi", "seq": 1}
    meta = json.loads(cases["meta"]["message"])
    assert meta["persistent"] == {"LOG_ID": "7"} and meta["metadata"] == {"x-a": "b"}
    assert cases["server_stream"]["seqs"] == [0, 1, 2, 3]
    assert (cases["client_stream"]["message"], cases["client_stream"]["seq"]) == ("a,b,c", 3)
    assert cases["bidi"] == {"case": "bidi", "seqs": [0, 1, 2], "eof": True}
    # Biz errors travel as Go Kitex sends them: status 13, message in grpc-message, biz-* trailers.
    biz = cases["biz_error"]
    assert (biz["code"], biz["details"]) == ("INTERNAL", "no credit")
    assert biz["trailers"] == {"biz-status": "1001", "biz-extra": '{"k":"v"}'}
    assert (cases["handler_error"]["code"], cases["handler_error"]["details"]) == (
        "INTERNAL",
        "boom [biz error]",
    )
    assert cases["deadline"]["code"] == "DEADLINE_EXCEEDED"


@pytest.fixture
async def plain_server() -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), "server", stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.startswith(b"LISTENING "), line
    try:
        yield line.split()[1].decode()
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@TRANSPORTS
async def test_our_client_calls_a_plain_grpcio_server(plain_server: str, protocol: TransportProtocol) -> None:
    cli = echo_kitex.new_client(
        "echo", client.with_host_ports(plain_server), client.with_transport_protocol(protocol)
    )
    try:
        assert (await cli.Unary(Req(message="hi", seq=3))).seq == 3
        assert [r.seq async for r in cli.ServerStream(Req(seq=3))] == [0, 1, 2]
        cs = await cli.ClientStream()
        for m in "xy":
            await cs.send(Req(message=m))
        assert (await cs.close_and_recv()).message == "x,y"
        bidi = await cli.Bidi()
        await bidi.send(Req(message="b", seq=9))
        assert (await bidi.recv()).seq == 9
        await bidi.close_send()
        assert [r async for r in bidi] == []

        with pytest.raises(RemoteOrNetworkError) as info:
            await cli.Unary(Req(message="notfound"))
        assert (info.value.grpc_status, info.value.detail) == (StatusCode.NOT_FOUND, "no such thing")
        with pytest.raises(BizStatusError) as biz:
            await cli.Unary(Req(message="biz:42:declined"))
        assert (biz.value.code, biz.value.message, biz.value.extra) == (42, "declined", {"k": "v"})

        with metainfo.with_value("temp", "t1"), metainfo.with_persistent_value("PERSIST_KEY", "p"):
            reply = await cli.Unary(
                Req(message="meta"), callopt.with_rpc_timeout(5), callopt.with_metadata("x-k", "v")
            )
        info_json: dict[str, Any] = json.loads(reply.message)
        md = info_json["metadata"]
        assert md["rpc-transit-temp"] == "t1" and md["rpc-persist-persist-key"] == "p" and md["x-k"] == "v"
        assert info_json["has_deadline"] is True
        if protocol is TransportProtocol.GRPC_H2:
            assert md["user-agent"].startswith("kitex-grpc/")  # grpcio sends its own user-agent

        # grpc-timeout reaches the peer: a stream whose deadline passes ends DEADLINE_EXCEEDED.
        stream = await cli.Bidi(callopt.with_rpc_timeout(0.2))
        with pytest.raises(RPCTimeoutError):
            await stream.recv()
        # gzip both ways with a grpc.aio server.
        big = await cli.Unary(Req(payload=b"z" * 50_000), callopt.with_compression("gzip"))
        assert big.payload == b"z" * 50_000
    finally:
        await cli.close()
