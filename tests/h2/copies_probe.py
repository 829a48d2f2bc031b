"""Counts the copies of large messages through the sans-IO HTTP/2 cores; run by test_copies.py in a
process that has bench/memcount.c preloaded. Prints one JSON object: copies per message byte for
each step, and whether every message arrived intact."""

from __future__ import annotations

import ctypes
import json

from kitex_grpc.protocol.h2_call import GrpcClientConnection, GrpcConnectionConfig, GrpcServerConnection
from kitex_grpc.protocol.h2_events import MessageReceived
from kitex_grpc.transport.h2.config import MAX_FRAME_SIZE

SIZE = 1 << 20
MESSAGES = 4
READ = 256 * 1024  # transport/receive_buffer.py's shared buffer

_lib = ctypes.CDLL(None)
_lib.memcount_bytes.restype = ctypes.c_ulonglong


def copied() -> int:
    return int(_lib.memcount_bytes())


def deliver(
    core: GrpcClientConnection | GrpcServerConnection, wire: bytes, sizes: list[int]
) -> tuple[list[bytes], int]:
    """Feed ``wire`` in reads of the given sizes (cycled), each a view of one reused buffer, as the
    shells' shared receive buffer delivers them; returns the messages and the bytes the core copied."""
    shared = bytearray(READ)
    view = memoryview(shared)
    got: list[bytes] = []
    count = 0
    pos = i = 0
    while pos < len(wire):
        n = min(sizes[i % len(sizes)], len(wire) - pos)
        i += 1
        view[:n] = wire[pos : pos + n]
        before = copied()
        events = core.receive_data(view[:n])
        count += copied() - before
        got += [ev.data for ev in events if isinstance(ev, MessageReceived)]
        shared[:n] = bytes(n)  # the buffer is reused: nothing may keep a view of it
        pos += n
        core.data_to_send()  # the WINDOW_UPDATEs
    return got, count


def send_all(core: GrpcClientConnection | GrpcServerConnection, sid: int, body: bytes) -> tuple[bytes, int]:
    """Send MESSAGES copies of ``body``; returns the wire bytes and the bytes the core copied."""
    before = copied()
    for _ in range(MESSAGES):
        core.send_message(sid, body)
    wire = core.data_to_send()
    count = copied() - before
    return bytes(wire), count


def measure(max_frame_size: int) -> dict[str, float | bool]:
    """Four 1 MiB messages each way on one stream, both sides advertising ``max_frame_size``."""
    config = GrpcConnectionConfig(
        initial_window_size=64 << 20,
        initial_connection_window_size=64 << 20,
        max_message_size=8 << 20,
        max_frame_size=max_frame_size,
    )
    client, server = GrpcClientConnection(config), GrpcServerConnection(config)
    server.receive_data(bytes(client.data_to_send()))
    client.receive_data(bytes(server.data_to_send()))
    server.receive_data(bytes(client.data_to_send()))
    client.data_to_send()
    request = b"q" * SIZE
    sid = client.start_call("/echo.v1.Echo/Bidi", "localhost")
    headers = bytes(client.data_to_send())
    server.receive_data(headers)

    wire, client_send = send_all(client, sid, request)

    received, server_receive = deliver(server, wire, [READ, 100_000, 4096, 65_536])

    server.send_headers(sid)
    client.receive_data(bytes(server.data_to_send()))
    reply = b"r" * SIZE
    wire, server_send = send_all(server, sid, reply)

    replies, client_receive = deliver(client, wire, [READ, 12_345, 200_000])

    total = SIZE * MESSAGES
    return {
        "client_send": client_send / total,
        "server_receive": server_receive / total,
        "server_send": server_send / total,
        "client_receive": client_receive / total,
        "intact": received == [request] * MESSAGES and replies == [reply] * MESSAGES,
    }


def main() -> None:
    # 16 KiB: the frames of grpc-go and Kitex; 256 KiB: what the h2 transport advertises.
    print(json.dumps({str(size): measure(size) for size in (16_384, MAX_FRAME_SIZE)}))


if __name__ == "__main__":
    main()
