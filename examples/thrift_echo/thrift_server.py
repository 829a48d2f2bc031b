"""Thrift Echo server over TTHeader: ``python examples/thrift_echo/thrift_server.py --addr 127.0.0.1:8888``.

The IDL (idl/echo.thrift) is loaded at run time. One port answers TTHeader, TTHeaderFramed, Framed
and Buffered Thrift, so Go Kitex clients of any Thrift transport can call it. Prints
``LISTENING <addr>`` once serving; SIGINT/SIGTERM drain in-flight calls and exit.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import kitex_grpc
from kitex_grpc import BizStatusError, eventloop, metainfo, server, thrift

IDL = Path(__file__).resolve().parents[2] / "idl" / "echo.thrift"
echo_thrift: Any = thrift.load(IDL)


class Echo:
    """Handlers take the IDL arguments and return the result; IDL exceptions are raised."""

    async def echo(self, req: Any) -> Any:
        if req.message.startswith("biz:"):
            raise BizStatusError(1001, req.message[4:], {"reason": "demo"})
        metainfo.send_backward_value("served-by", "python")
        trace = metainfo.get_value("trace") or "-"
        return echo_thrift.EchoReply(message=f"{req.message} (trace={trace})", seq=req.seq)

    async def notify(self, req: Any) -> None:
        print(f"  [server] notified: {req.message}", flush=True)

    async def fail(self, req: Any) -> Any:
        raise echo_thrift.EchoError(code=req.seq, message=req.message)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8888")
    args = parser.parse_args()
    svr = kitex_grpc.new_server(
        server.with_service_addr(args.addr),
        server.with_transport_protocol("ttheader"),
        server.with_exit_wait_time(2),
    )
    svr.register_service(thrift.service_info(echo_thrift.Echo), Echo())
    await svr.start()
    print(f"LISTENING {svr.address}", flush=True)
    await svr.run()


if __name__ == "__main__":
    eventloop.run(main())
