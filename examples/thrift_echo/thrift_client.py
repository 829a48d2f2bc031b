"""Thrift Echo client: ``python examples/thrift_echo/thrift_client.py --addr HOST:PORT --transport ttheader``.

Calls echo, the one-way notify, the IDL exception and a biz error, with metainfo both ways. ``--mux N``
(TTHeader transports) multiplexes them, and a burst of concurrent calls, over N shared connections.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from kitex_grpc import BizStatusError, callopt, client, eventloop, metainfo, thrift

IDL = Path(__file__).resolve().parents[2] / "idl" / "echo.thrift"
echo_thrift: Any = thrift.load(IDL)


async def main(addr: str, transport: str, mux: int) -> None:
    async with thrift.new_client(
        echo_thrift.Echo,
        "echo",
        client.with_host_ports(addr),
        client.with_transport_protocol(transport),
        client.with_rpc_timeout(2),
        *([client.with_mux_connection(mux)] if mux else []),
    ) as cli:
        with metainfo.with_value("trace", "demo-1"), metainfo.with_backward_values() as backward:
            reply = await cli.echo(echo_thrift.EchoRequest(message="hello", seq=1))
        print(f"  echo       -> {reply.message!r}, backward={backward.received.get('served-by')}")

        await cli.notify(echo_thrift.EchoRequest(message="fire and forget"))
        print("  notify     -> sent (one-way: no reply)")

        try:
            await cli.fail(echo_thrift.EchoRequest(message="declared", seq=7), callopt.with_rpc_timeout(1))
        except echo_thrift.EchoError as err:
            print(f"  fail       -> EchoError(code={err.code}, message={err.message!r})")

        try:
            await cli.echo(echo_thrift.EchoRequest(message="biz:out of credit"))
        except BizStatusError as err:
            print(f"  biz error  -> code={err.code} message={err.message!r} extra={err.extra}")
        except thrift.MissingResultError:
            print("  biz error  -> lost: Framed carries no biz status (as in Kitex)")

        if mux:
            burst = [cli.echo(echo_thrift.EchoRequest(message=f"m{i}", seq=i)) for i in range(100)]
            replies = await asyncio.gather(*burst)
            in_order = all(r.seq == i for i, r in enumerate(replies))
            print(f"  mux burst  -> {len(replies)} calls at once over {mux} connections, matched={in_order}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8888")
    parser.add_argument("--transport", default="ttheader", choices=["ttheader", "ttheader_framed", "framed"])
    parser.add_argument("--mux", type=int, default=0, help="shared connections (TTHeader transports only)")
    args = parser.parse_args()
    eventloop.run(main(args.addr, args.transport, args.mux))
