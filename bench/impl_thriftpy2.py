"""The Thrift baseline: thriftpy2's asyncio client and server on idl/echo.thrift, framed binary.

A thriftpy2 client owns one connection and makes one call at a time, so N calls in flight use a pool
of N clients (what Kitex's Thrift long-connection pool does too). Thrift has no streams: unary only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.adapter import BidiStream, StoppableServer, UnavailableError

try:
    import thriftpy2
    from thriftpy2.contrib.aio.protocol.binary import TAsyncBinaryProtocolFactory
    from thriftpy2.contrib.aio.transport.framed import TAsyncFramedTransportFactory
    from thriftpy2.rpc import make_aio_client, make_aio_server
except ImportError as _exc:
    raise ImportError(f"thriftpy2 is not installed: {_exc}") from _exc

IDL = Path(__file__).resolve().parent.parent / "idl" / "echo.thrift"
POOL_LIMIT = 1024  # never more connections than this, whatever the caller asks


class _Handler:
    def __init__(self, module: Any) -> None:
        self._reply = module.EchoReply

    async def echo(self, req: Any) -> Any:
        return self._reply(message=req.message, payload=req.payload, seq=req.seq)

    async def notify(self, req: Any) -> None:
        return None

    async def fail(self, req: Any) -> Any:
        return self._reply(message=req.message, payload=req.payload, seq=req.seq)


class _Client:
    """A pool of single-connection clients: a call borrows one, opening a new one if none is idle."""

    def __init__(self, module: Any, host: str, port: int) -> None:
        self._module = module
        self._host = host
        self._port = port
        self._idle: list[Any] = []
        self._all: list[Any] = []

    def request(self, payload: bytes) -> Any:
        return self._module.EchoRequest(message="bench", payload=payload, seq=1)

    async def _borrow(self) -> Any:
        if self._idle:
            return self._idle.pop()
        if len(self._all) >= POOL_LIMIT:
            raise RuntimeError(f"thriftpy2 pool exhausted ({POOL_LIMIT} connections)")
        cli = await make_aio_client(
            self._module.Echo,
            self._host,
            self._port,
            proto_factory=TAsyncBinaryProtocolFactory(),
            trans_factory=TAsyncFramedTransportFactory(),
            # No per-read timeout, like the kitex-grpc bench client (no RPC timeout). With one, thriftpy2
            # wraps every socket read and drain in asyncio.wait_for (a task and a timer per read),
            # which costs it about 40% of its rate; connects go to 127.0.0.1 and cannot hang.
            timeout=None,
        )
        self._all.append(cli)
        return cli

    async def unary(self, request: Any) -> Any:
        cli = await self._borrow()
        try:
            reply = await cli.echo(request)
        except BaseException:
            cli.close()  # its connection is in an unknown state; do not reuse it
            self._all.remove(cli)
            raise
        self._idle.append(cli)
        return reply

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[BidiStream]:
        raise UnavailableError("thrift has no streaming calls")
        yield  # pragma: no cover

    async def close(self) -> None:
        for cli in self._all:
            cli.close()
        self._all.clear()
        self._idle.clear()


class ThriftpyAdapter:
    def __init__(self) -> None:
        self._module: Any = thriftpy2.load(str(IDL), module_name="echo_thrift")

    async def start_server(self, host: str) -> StoppableServer:
        server = make_aio_server(
            self._module.Echo,
            _Handler(self._module),
            host,
            1,  # thriftpy2 refuses port 0 here; the real (free) port is set below, before listen()
            proto_factory=TAsyncBinaryProtocolFactory(),
            trans_factory=TAsyncFramedTransportFactory(),
            # thriftpy2 wraps each connection's whole handler in wait_for(client_timeout), default 3 s:
            # a long connection is cut 3 s after accept, whatever its traffic. Connections here are
            # long-lived (a pool), as thriftpy2's threaded server and Kitex treat them: no cap.
            client_timeout=None,
            loop=asyncio.get_running_loop(),
        )
        server.trans.port = 0
        server.trans.listen()
        server.server = await server.trans.accept(server.handle)
        port = server.server.sockets[0].getsockname()[1]
        return StoppableServer(f"{host}:{port}", server.close)

    async def connect(self, address: str) -> _Client:
        host, _, port = address.rpartition(":")
        return _Client(self._module, host, int(port))


def adapter(arg: str) -> ThriftpyAdapter:
    return ThriftpyAdapter()
