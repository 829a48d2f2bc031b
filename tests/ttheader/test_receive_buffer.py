"""Every connection on a thread reads into one shared buffer (kitex_grpc.transport.receive_buffer).

What a connection keeps of a read (an unfinished frame, the bytes detection is still waiting for)
must be copied out before the next read on another connection overwrites the buffer. Each test
leaves connection A half-way through a request or reply, completes whole calls on connection B
in between, and then checks that A's message arrives intact.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from kitex_grpc.codec.envelope import THRIFT
from kitex_grpc.transport.ttheader.wire import Framing, MessageDecoder, encode
from tests.ttheader.support import ECHO_INFO, Reply, Req, connect, echo_thrift, open_raw, read_frame, serve

FRAMINGS = {"ttheader": Framing.TTHEADER, "framed": Framing.FRAMED, "buffered": Framing.BUFFERED}


def request(framing: Framing, message: str, seq_id: int) -> bytes:
    method = ECHO_INFO.methods["echo"]
    assert method.pack_request is not None
    body = method.serialize_request(method.pack_request(Req(message=message, payload=message.encode() * 50)))
    return encode(framing, THRIFT, "echo", 1, seq_id, body)


async def read_reply(reader: asyncio.StreamReader, framing: Framing) -> tuple[int, Any]:
    if framing is Framing.BUFFERED:  # no length: read until a whole message decodes
        decoder = MessageDecoder(framing, 1 << 20)
        async with asyncio.timeout(5):
            while True:
                messages = decoder.receive_data(await reader.read(65536))
                if messages:
                    [message] = messages
                    break
    else:
        [message] = MessageDecoder(framing, 1 << 20).receive_data(await read_frame(reader))
    return message.seq_id, ECHO_INFO.methods["echo"].deserialize_response(message.body)


@pytest.mark.parametrize("name", sorted(FRAMINGS))
async def test_server_keeps_a_partial_request_across_other_connections_reads(name: str) -> None:
    framing = FRAMINGS[name]
    async with serve() as (svr, _):
        reader_a, writer_a = await open_raw(svr.address)
        reader_b, writer_b = await open_raw(svr.address)
        data_a = request(framing, "from-a", 7)
        # Cuts: inside detection (3 bytes), inside the header or length, inside the body.
        cuts = [0, 3, 11, len(data_a) // 2, len(data_a)]
        for i, (start, end) in enumerate(itertools.pairwise(cuts)):
            writer_a.write(data_a[start:end])
            await writer_a.drain()
            if end == len(data_a):
                break
            # B's whole round trip is read into the same buffer after A's piece (sent first).
            writer_b.write(request(framing, f"from-b-{i}", 100 + i))
            seq_b, reply_b = await read_reply(reader_b, framing)
            assert (seq_b, reply_b.success.message) == (100 + i, f"from-b-{i}")
        seq_a, reply_a = await read_reply(reader_a, framing)
        assert seq_a == 7
        assert reply_a.success.message == "from-a"
        assert reply_a.success.payload == b"from-a" * 50
        for writer in (writer_a, writer_b):
            writer.close()


async def test_client_keeps_a_partial_reply_across_other_connections_reads() -> None:
    half_sent = asyncio.Event()
    b_done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        [message] = MessageDecoder(Framing.TTHEADER, 1 << 20).receive_data(await read_frame(reader))
        method = ECHO_INFO.methods["echo"]
        req = method.deserialize_request(message.body)
        text = req.req.message
        result = echo_thrift.Echo.echo_result(success=Reply(message=text, payload=text.encode() * 300, seq=1))
        body = method.serialize_response(result)
        reply = encode(Framing.TTHEADER, THRIFT, "echo", 2, message.seq_id, body)
        if text == "a":
            writer.write(reply[: len(reply) // 2])
            await writer.drain()
            half_sent.set()
            await b_done.wait()  # B's reply was read (into the shared buffer) meanwhile
            writer.write(reply[len(reply) // 2 :])
        else:
            await half_sent.wait()
            writer.write(reply)
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    raw = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = raw.sockets[0].getsockname()[1]
    try:
        async with connect(f"127.0.0.1:{port}", "ttheader") as cli:
            call_a = asyncio.create_task(cli.echo(Req(message="a")))
            reply_b = await asyncio.wait_for(cli.echo(Req(message="b")), 5)
            assert reply_b.message == "b" and reply_b.payload == b"b" * 300
            b_done.set()
            reply_a = await asyncio.wait_for(call_a, 5)
            assert reply_a.message == "a" and reply_a.payload == b"a" * 300
    finally:
        raw.close()
        await raw.wait_closed()
