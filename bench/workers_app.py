"""The server of ``bench/workers.py``: Echo over TTHeader (Thrift, idl/echo.thrift) or GRPC_H2 (protobuf).

``kitex-grpc serve bench.workers_app:make_server --workers N`` with ``BENCH_TRANSPORT`` = ``ttheader``
or ``grpc_h2``; it listens on 127.0.0.1:0. Both echo message, payload and seq, as every bench server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import server, thrift

IDL = Path(__file__).resolve().parents[1] / "idl" / "echo.thrift"


def make_server() -> server.Server:
    transport = os.environ.get("BENCH_TRANSPORT", "ttheader")
    options = [server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol(transport)]
    if transport == "grpc_h2":
        from gen.echo.v1 import echo_kitex, echo_pb2

        class PbEcho(echo_kitex.EchoHandler):
            async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
                return echo_pb2.EchoReply(message=request.message, payload=request.payload, seq=request.seq)

        return echo_kitex.new_server(PbEcho(), *options)
    module = thrift.load(IDL)

    class ThriftEcho:
        async def echo(self, req: Any) -> Any:
            return module.EchoReply(message=req.message, payload=req.payload, seq=req.seq)

    svr = kitex_grpc.new_server(*options)
    svr.register_service(thrift.service_info(module.Echo), ThriftEcho())
    return svr
