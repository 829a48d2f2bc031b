"""PacedWrites over a real socket: a large write never sits whole in the transport's buffer, the bytes
arrive whole and in order, and a close waits for what is still queued."""

from __future__ import annotations

import asyncio

from kitex_grpc.transport.paced_writes import SLICE, PacedWrites


class _Sender(asyncio.Protocol):
    def __init__(self) -> None:
        self.writes: PacedWrites | None = None
        self.transport: asyncio.Transport | None = None
        self.peak_buffered = 0
        self.made = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.writes = PacedWrites(transport)
        self.made.set_result(None)

    def note(self) -> None:
        assert self.transport is not None
        self.peak_buffered = max(self.peak_buffered, self.transport.get_write_buffer_size())

    def pause_writing(self) -> None:
        assert self.writes is not None
        self.note()
        self.writes.pause()

    def resume_writing(self) -> None:
        assert self.writes is not None
        self.writes.resume()
        self.note()


async def test_a_large_write_is_paced_and_arrives_whole_before_the_close() -> None:
    async with asyncio.timeout(20):
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result((reader, writer))

        listener = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        sender = _Sender()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: sender, "127.0.0.1", port)
        reader, writer = await accepted
        assert sender.writes is not None
        small, large = b"first", bytes(range(256)) * (128 * 1024)  # 32 MiB: far more than the socket buffers
        sender.writes.write(small)
        sender.writes.write(large)  # the peer reads nothing yet: most of it stays queued with us
        sender.writes.write(b"last")  # behind the slices, not ahead of them
        sender.note()
        assert sender.writes.pending > len(large) // 2
        sender.writes.close()  # waits for the queue
        assert not transport.is_closing()
        received = await reader.read(-1)  # to EOF: the close came after the last slice
        assert received == small + large + b"last"
        # the transport never held much more than a slice past its high-water mark (64 KiB)
        assert sender.peak_buffered <= SLICE + 64 * 1024 + len(small)
        writer.close()
        listener.close()
        await listener.wait_closed()
