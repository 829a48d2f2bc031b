"""Wire interop with a plain grpc.aio peer in its own process (no kitex_grpc code), over h2."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kitex_grpc import callopt, metainfo
from kitex_grpc.errors import BizStatusError, RemoteOrNetworkError, RPCTimeoutError
from kitex_grpc.status import StatusCode
from tests.h2.helpers import h2_client, h2_server
from tests.support import Req

PEER = Path(__file__).resolve().parents[1] / "e2e" / "plain_grpc_peer.py"


async def test_plain_grpc_aio_client_calls_our_h2_server() -> None:
    async with h2_server() as (svr, _, _t):
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


async def test_our_h2_client_calls_a_plain_grpc_aio_server(plain_server: str) -> None:
    cli = h2_client(plain_server)
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
        assert md["user-agent"].startswith("kitex-grpc/") and info_json["has_deadline"] is True

        # grpc-timeout reaches the peer: a stream whose deadline passes ends DEADLINE_EXCEEDED.
        stream = await cli.Bidi(callopt.with_rpc_timeout(0.2))
        with pytest.raises(RPCTimeoutError):
            await stream.recv()
        # gzip both ways with a grpc.aio server.
        big = await cli.Unary(Req(payload=b"z" * 50_000), callopt.with_compression("gzip"))
        assert big.payload == b"z" * 50_000
    finally:
        await cli.close()
