"""kitex-grpc's TTHeader transports with Thrift payloads (idl/echo.thrift), and thriftpy2's sync side.

Entries (the registry's ``arg`` picks one):

* ``adapter("TTHEADER")``: our client -> our server over TTHeader (or ``TTHEADER_FRAMED``/``FRAMED``).
  Our client keeps one request in flight per connection, as Kitex does, so 64 calls in flight use up
  to 64 pooled connections: the pool's idle limits are raised to 128 per address so they stay open
  (Kitex's default of 10 would close 54 of them after every burst).
* ``adapter("TTHEADER:mux=N")``: the same over ``N`` multiplexed connections
  (``client.with_mux_connection(N)``): all 64 calls in flight share them, matched by seq id.
* ``sync_adapter("thriftpy2")``: thriftpy2's sync client -> its ``TThreadedServer``, framed, Cython
  binary protocol.
* ``sync_adapter("kitex")``: the same thriftpy2 sync client -> our server (detected as Framed).
* ``sync_adapter("floor")``: the same client -> an asyncio server that does no work: it edits each
  request's bytes into the reply. What it costs per call is the event loop's and the system calls'
  share alone, the floor under any asyncio server (a reference, run only when named).

The sync client is driven as its users run it: 64 plain threads (64 in flight), each with its own
thriftpy2 client and connection, calling in a loop (``bench.adapter.drive_threads``). Both servers see
the same client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import kitex_grpc
from bench.adapter import BidiStream, StoppableServer, UnavailableError, close_and_wait, max_message_size
from kitex_grpc import client, server, thrift
from kitex_grpc.transport_protocol import TransportProtocol

IDL = Path(__file__).resolve().parent.parent / "idl" / "echo.thrift"
_module: Any = thrift.load(IDL, "bench_echo_thrift")


class _Handler:
    async def echo(self, req: Any) -> Any:
        return _module.EchoReply(message=req.message, payload=req.payload, seq=req.seq)

    async def notify(self, req: Any) -> None:
        return None

    async def fail(self, req: Any) -> Any:
        return _module.EchoReply(message=req.message, payload=req.payload, seq=req.seq)


class _SyncHandler:
    def echo(self, req: Any) -> Any:
        return _module.EchoReply(message=req.message, payload=req.payload, seq=req.seq)

    def notify(self, req: Any) -> None:
        return None

    def fail(self, req: Any) -> Any:
        return _module.EchoReply(message=req.message, payload=req.payload, seq=req.seq)


async def _start_kitex_server(host: str) -> kitex_grpc.Server:
    size = max_message_size()
    svr = kitex_grpc.new_server(
        server.with_service_addr(f"{host}:0"),
        server.with_transport_protocol(TransportProtocol.TTHEADER),
        *([] if size is None else [server.with_max_message_size(size)]),
    )
    svr.register_service(thrift.service_info(_module.Echo), _Handler())
    await svr.start()
    return svr


class _NoBidi:
    def request(self, payload: bytes) -> Any:
        return _module.EchoRequest(message="bench", payload=payload, seq=1)

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[BidiStream]:
        raise UnavailableError("thrift has no streaming calls")
        yield  # pragma: no cover


class _KitexClient(_NoBidi):
    def __init__(self, cli: thrift.ThriftClient) -> None:
        self._cli = cli
        self.unary = cli.echo

    async def close(self) -> None:
        await self._cli.close()


class KitexAdapter:
    """Our TTHeader (or TTHeaderFramed / Framed) client and server."""

    def __init__(self, arg: str) -> None:
        protocol, _, mux = (arg or "TTHEADER").partition(":mux=")
        self._protocol = TransportProtocol.parse(protocol)
        self._mux = int(mux) if mux else 0

    async def start_server(self, host: str) -> kitex_grpc.Server:
        return await _start_kitex_server(host)

    async def connect(self, address: str) -> _KitexClient:
        size = max_message_size()
        cli = thrift.new_client(
            _module.Echo,
            "echo",
            client.with_host_ports(address),
            client.with_transport_protocol(self._protocol),
            client.with_connect_timeout(1.0),
            client.with_long_connection(max_idle_per_address=128, max_idle_global=1024),
            *([client.with_mux_connection(self._mux)] if self._mux else []),
            *([] if size is None else [client.with_max_message_size(size)]),
        )
        return _KitexClient(cli)


# -- thriftpy2 sync side ---------------------------------------------------------------------------------


def _start_threaded_server(host: str) -> StoppableServer:
    from thriftpy2.protocol import TCyBinaryProtocolFactory
    from thriftpy2.rpc import TProcessor
    from thriftpy2.server import TThreadedServer
    from thriftpy2.transport import TCyFramedTransportFactory, TServerSocket

    trans = TServerSocket(host=host, port=0, client_timeout=None)
    trans.listen()  # bound here so the real port is known; the accept loop runs in a thread below
    sock = trans.sock
    port = sock.getsockname()[1]
    srv = TThreadedServer(
        TProcessor(_module.Echo, _SyncHandler()),
        trans,
        iprot_factory=TCyBinaryProtocolFactory(),
        itrans_factory=TCyFramedTransportFactory(),
        daemon=True,
    )

    def accept_loop() -> None:
        while not srv.closed:
            try:
                conn = trans.accept()
            except OSError:
                return
            threading.Thread(target=srv.handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()

    async def stop() -> None:
        srv.close()
        sock.close()

    return StoppableServer(f"{host}:{port}", stop)


class _SyncClient(_NoBidi):
    """thriftpy2 sync clients, one per load thread (``BlockingClient``)."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._clients: list[Any] = []

    def connect_caller(self) -> Callable[[Any], Any]:
        from thriftpy2.protocol import TCyBinaryProtocolFactory
        from thriftpy2.rpc import make_client
        from thriftpy2.transport import TCyFramedTransportFactory

        cli = make_client(
            _module.Echo,
            self._host,
            self._port,
            proto_factory=TCyBinaryProtocolFactory(),
            trans_factory=TCyFramedTransportFactory(),
            timeout=10_000,
        )
        self._clients.append(cli)
        echo: Callable[[Any], Any] = cli.echo
        return echo

    async def close(self) -> None:
        for cli in self._clients:
            cli.close()


class _FloorProtocol(asyncio.BufferedProtocol):
    """Answers Framed ``echo`` calls by editing each request into its reply, decoding nothing.

    ``echo_args{1: EchoRequest}`` becomes ``echo_result{0: EchoReply}`` by changing the message type
    and the outer field's id: the two structs have the same fields.
    """

    def __init__(self) -> None:
        self._buffer = bytearray(1 << 16)
        self._view = memoryview(self._buffer)
        self._filled = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._filled == len(self._buffer):  # a message larger than the buffer: double it
            self._view.release()
            self._buffer.extend(bytes(len(self._buffer)))
            self._view = memoryview(self._buffer)
        return self._view[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        data, start, replies = self._buffer, 0, []
        while self._filled - start >= 4:
            end = start + 4 + int.from_bytes(data[start : start + 4], "big")
            if end > self._filled:
                break
            reply = bytearray(data[start:end])
            reply[7] = 2  # the version word's low byte (after the frame length): REPLY
            field = 12 + int.from_bytes(reply[8:12], "big") + 4  # past the name and the seq id
            reply[field + 1 : field + 3] = b"\0\0"  # the outer field's id: 1 (req) -> 0 (success)
            replies.append(reply)
            start = end
        if start:
            data[: self._filled - start] = data[start : self._filled]
            self._filled -= start
        if replies and self._transport is not None:
            self._transport.write(b"".join(replies))


class SyncAdapter:
    """thriftpy2's sync client against ``thriftpy2``'s threaded server, ``kitex`` (ours) or ``floor``."""

    def __init__(self, which: str) -> None:
        if which not in ("thriftpy2", "kitex", "floor"):
            raise UnavailableError(f"unknown sync server {which!r}")
        self._which = which

    async def start_server(self, host: str) -> Any:
        if self._which == "kitex":
            return await _start_kitex_server(host)
        if self._which == "floor":
            floor = await asyncio.get_running_loop().create_server(_FloorProtocol, host, 0)
            port = floor.sockets[0].getsockname()[1]
            return StoppableServer(f"{host}:{port}", partial(close_and_wait, floor))
        return _start_threaded_server(host)

    async def connect(self, address: str) -> _SyncClient:
        host, _, port = address.rpartition(":")
        return _SyncClient(host, int(port))


def adapter(arg: str) -> KitexAdapter:
    return KitexAdapter(arg)


def sync_adapter(arg: str) -> SyncAdapter:
    return SyncAdapter(arg)
