"""The lean frame buffer (h2_patched.frame_buffer): DATA payloads cut from reads without copies.

Differential: the lean server must see what plain h2 sees, for reads given as ``bytes`` and as views
of one buffer that is overwritten after every read (transport/receive_buffer.py), cut anywhere.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from kitex_grpc.protocol import grpc_headers as gh
from kitex_grpc.protocol.grpc_framing import encode_message
from kitex_grpc.protocol.h2_patched import PatchedH2Connection
from tests.protocol.test_h2_call import _PREFACE, _frame, _opened, _servers, _summary

_WINDOW = 4 << 20  # the servers' connection window here: the wire below is ~370 KB


def _big_client_bytes() -> bytes:
    """A plain h2 client's frames: six streams of ~60 KB in max-size DATA frames, a padded frame, a
    PING and a WINDOW_UPDATE between them, END_STREAM last: over 64 KiB, so large reads are cut."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    # The servers' WINDOW_UPDATE for the connection window they open (_wide_servers).
    conn.receive_data(_frame(0x4, 0, 0, b"") + _frame(0x8, 0, 0, (_WINDOW - 65_535).to_bytes(4, "big")))
    request = gh.build_request_headers("/a.B/C", "svc")
    sids = (1, 3, 5, 7, 9, 11)
    for sid in sids:
        conn.send_headers(sid, request)
    message = encode_message(bytes(range(256)) * 234)  # 59,909 bytes: 3 full frames and a partial one
    for start in range(0, len(message), 16_384):
        for sid in sids:
            conn.send_data(sid, message[start : start + 16_384])
        conn.ping(b"12345678")
        conn.increment_flow_control_window(1000)
    conn.send_data(3, encode_message(b"pad"), pad_length=40)
    for sid in sids:
        conn.end_stream(sid)
    return conn.data_to_send()


def _wide_servers() -> tuple[h2.connection.H2Connection, PatchedH2Connection]:
    plain, lean = _servers()
    for conn in (plain, lean):
        conn.increment_flow_control_window(_WINDOW - 65_535)
        conn.data_to_send()
    return plain, lean


@pytest.mark.parametrize("chunk", [9, 4_096, 16_393, 70_000, 262_144, 1 << 20])
@pytest.mark.parametrize("reads", ["bytes", "reused-buffer"])
def test_lean_receive_path_sees_what_h2_sees_in_large_reads(chunk: int, reads: str) -> None:
    wire = _big_client_bytes()
    assert len(wire) > 300_000
    plain, lean = _wide_servers()
    shared = bytearray(chunk)
    got: dict[str, list[h2.events.Event]] = {"plain": [], "lean": []}
    for start in range(0, len(wire), chunk):
        piece = wire[start : start + chunk]
        got["plain"] += plain.receive_data(piece)
        if reads == "bytes":
            got["lean"] += lean.receive_data(piece)
        else:
            view = memoryview(shared)[: len(piece)]
            view[:] = piece
            got["lean"] += lean.receive_data(view)
            shared[:] = b"\xee" * chunk  # reused: a payload that still viewed it would change now
    lean_seen = _summary(got["lean"])
    assert lean_seen == _summary(got["plain"])
    assert sum(1 for e in lean_seen if e[0] == "data") >= 6 * 4 + 1
    assert lean.data_to_send() == plain.data_to_send()  # PING ACKs, WINDOW_UPDATEs
    assert lean.inbound_flow_control_window == plain.inbound_flow_control_window


def test_data_payloads_are_views_of_the_read_not_copies() -> None:
    # One read (of 16 KiB or more) holding whole DATA frames: each payload is a slice of that read.
    _, lean = _servers()
    lean.receive_data(_opened())
    read = _frame(0x0, 0, 1, b"a" * 10_000) + _frame(0x0, 0, 1, b"b" * 12_000)
    events = lean.receive_data(read)
    payloads = [ev.data for ev in events if isinstance(ev, h2.events.DataReceived)]
    assert [bytes(p) for p in payloads] == [b"a" * 10_000, b"b" * 12_000]
    assert all(isinstance(p, memoryview) and p.obj is read and p.readonly for p in payloads)


def test_a_frame_completed_in_the_buffer_is_handed_out_without_a_copy() -> None:
    # A large DATA frame split across two reads is joined in the buffer, and its payload is a view of
    # that buffer, which the frame buffer then lets go of: later reads do not touch it.
    _, lean = _servers()
    lean.receive_data(_opened())
    lean.max_inbound_frame_size = 1 << 20  # as after our SETTINGS (256 KiB) were acknowledged
    frame = _frame(0x0, 0, 1, b"z" * 60_000)
    assert lean.receive_data(frame[:30_000]) == []
    (event,) = lean.receive_data(frame[30_000:])
    assert isinstance(event, h2.events.DataReceived)
    assert isinstance(event.data, memoryview) and event.data.readonly
    assert event.data.obj is not lean.incoming_buffer._data
    lean.receive_data(_frame(0x0, 0, 1, b"y" * 20_000)[:17_000])  # a new partial frame
    assert bytes(event.data) == b"z" * 60_000


def test_an_oversized_frame_is_refused_at_its_header() -> None:
    # h2 waits for the whole payload of a frame over SETTINGS_MAX_FRAME_SIZE before it refuses it; the
    # lean buffer refuses it from the 9 header bytes, so nothing of it is held.
    plain, lean = _servers()
    header = bytes([0x10, 0, 0, 0x0, 0]) + (1).to_bytes(4, "big")  # DATA of 1 MiB on stream 1
    plain.receive_data(_opened())
    lean.receive_data(_opened())
    assert plain.receive_data(header) == []  # still waiting for 1 MiB
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        lean.receive_data(header)


def test_a_read_left_unparsed_by_an_error_keeps_the_order_of_what_follows() -> None:
    # If h2's loop stopped inside a read (an exception), the rest of that read and the next read are
    # buffered in order, and parsing resumes from them.
    _, lean = _servers()
    lean.receive_data(_PREFACE)
    buffer = lean.incoming_buffer
    first, second = _frame(0x0, 0, 1, b"1"), _frame(0x0, 0, 1, b"2")
    buffer.add_data(first + second[:5])
    next(buffer)  # the first frame; the loop "stops" here
    buffer.add_data(second[5:])
    frame = next(buffer)
    assert (frame.stream_id, bytes(frame.data)) == (1, b"2")
    with pytest.raises(StopIteration):
        next(buffer)


def test_a_requests_last_data_frame_takes_the_lean_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # A unary request is HEADERS then one DATA with END_STREAM (grpc-go, grpcio and ours): that frame
    # is accounted without h2's hyperframe objects and state-machine look-ups, with h2's events.
    plain, lean = _servers()
    wire = _opened() + _frame(0x0, 0x1, 1, encode_message(b"request"))
    expected = _summary(plain.receive_data(wire))
    own_path: list[int] = []
    receive = h2.connection.H2Connection._receive_data_frame

    def counted(conn: h2.connection.H2Connection, frame: object) -> object:
        own_path.append(1)
        return receive(conn, frame)  # type: ignore[arg-type]

    monkeypatch.setattr(h2.connection.H2Connection, "_receive_data_frame", counted)
    assert _summary(lean.receive_data(wire)) == expected
    assert [e[0] for e in expected] == ["RemoteSettingsChanged", "RequestReceived", "data", "StreamEnded"]
    assert own_path == []
    assert lean.streams[1].state_machine.state == plain.streams[1].state_machine.state
    assert lean.inbound_flow_control_window == plain.inbound_flow_control_window
