"""Frame-level tests of the gRPC-over-h2 cores: a client core and a server core exchanging bytes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import TypeVar

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from kitex_grpc.protocol import grpc_headers as gh
from kitex_grpc.protocol.grpc_framing import encode_message, gzip_compress
from kitex_grpc.protocol.h2_call import (
    ConnectionClosedError,
    GrpcClientConnection,
    GrpcConnectionConfig,
    GrpcServerConnection,
    H2ConnectionError,
    StreamClosedError,
    TooManyStreamsError,
)
from kitex_grpc.protocol.h2_events import (
    CallRejected,
    CallStarted,
    ConnectionTerminated,
    Event,
    HeadersReceived,
    MessageReceived,
    PingAcked,
    PingReceived,
    SettingsChanged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from kitex_grpc.protocol.h2_patched import PatchedH2Connection
from kitex_grpc.status import StatusCode

E = TypeVar("E", bound=Event)
Core = GrpcClientConnection | GrpcServerConnection | h2.connection.H2Connection


def pump(client: Core, server: Core) -> tuple[list[Event], list[Event]]:
    """Move bytes both ways until both sides are quiet; returns (client events, server events)."""
    got_c: list[Event] = []
    got_s: list[Event] = []
    while True:
        to_server = client.data_to_send()
        to_client = server.data_to_send()
        if not to_server and not to_client:
            return got_c, got_s
        if to_server:
            got_s += server.receive_data(to_server)  # type: ignore[arg-type]
        if to_client:
            got_c += client.receive_data(to_client)  # type: ignore[arg-type]


def only(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def one(events: list[Event], kind: type[E]) -> E:
    found = only(events, kind)
    assert len(found) == 1, events
    return found[0]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events if not isinstance(e, SettingsChanged | WindowUpdated)]


def connected(
    client_config: GrpcConnectionConfig | None = None, server_config: GrpcConnectionConfig | None = None
) -> tuple[GrpcClientConnection, GrpcServerConnection]:
    client = GrpcClientConnection(client_config)
    server = GrpcServerConnection(server_config)
    pump(client, server)
    return client, server


def ack_all(core: GrpcClientConnection | GrpcServerConnection, events: list[Event]) -> None:
    for ev in only(events, MessageReceived):
        core.acknowledge_received(ev.stream_id, ev.flow_controlled_length)


# --- call shapes ------------------------------------------------------------------------------------


def test_unary_success() -> None:
    client, server = connected()
    sid = client.start_call("/echo.Echo/Unary", "echo", metadata=[("x-id", "7")], timeout=1.0)
    client.send_message(sid, b"ping", end=True)
    s_ev = server.receive_data(client.data_to_send())
    assert kinds(s_ev) == ["CallStarted", "MessageReceived", "StreamEnded"]
    started = one(s_ev, CallStarted)
    assert started.stream_id == sid == 1
    assert started.path == "/echo.Echo/Unary"
    assert started.authority == "echo"
    assert started.metadata == (("x-id", "7"),)
    assert started.timeout == pytest.approx(1.0)
    assert started.content_type == "application/grpc" and started.content_subtype == ""
    # Every call lists what the client inflates (gRPC compression.md), compressed or not.
    assert started.encoding is None and started.accept_encoding == ("identity", "deflate", "gzip")
    assert started.user_agent == gh.DEFAULT_USER_AGENT
    assert one(s_ev, MessageReceived).data == b"ping"

    server.send_headers(sid, metadata=[("h", "1")])
    server.send_message(sid, b"pong")
    server.send_trailers(sid, StatusCode.OK, metadata=[("t", "2")])
    c_ev, _ = pump(client, server)
    assert kinds(c_ev) == ["HeadersReceived", "MessageReceived", "TrailersReceived"]
    assert one(c_ev, HeadersReceived).metadata == (("h", "1"),)
    assert one(c_ev, MessageReceived).data == b"pong"
    trailers = one(c_ev, TrailersReceived)
    assert trailers.status is StatusCode.OK and trailers.raw_status == 0
    assert trailers.metadata == (("t", "2"),) and not trailers.trailers_only
    assert client.open_calls == 0 and server.open_calls == 0


def test_unary_request_is_headers_plus_one_data_frame_with_end_stream() -> None:
    client = GrpcClientConnection()
    sid = client.start_call("/a.B/C", "svc")
    client.send_message(sid, b"x", end=True)
    raw = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    raw.initiate_connection()
    events = raw.receive_data(client.data_to_send())
    data = [e for e in events if isinstance(e, h2.events.DataReceived)]
    assert len(data) == 1 and data[0].data == encode_message(b"x") and data[0].stream_ended is not None


def test_server_streaming() -> None:
    client, server = connected()
    sid = client.start_call("/echo.Echo/ServerStream", "echo")
    client.send_message(sid, b"req", end=True)
    pump(client, server)
    for i in range(3):
        server.send_message(sid, b"r%d" % i)  # headers go out implicitly with the first message
    server.send_trailers(sid, StatusCode.OK)
    c_ev, _ = pump(client, server)
    assert kinds(c_ev) == ["HeadersReceived"] + ["MessageReceived"] * 3 + ["TrailersReceived"]
    assert [m.data for m in only(c_ev, MessageReceived)] == [b"r0", b"r1", b"r2"]


def test_client_streaming() -> None:
    client, server = connected()
    sid = client.start_call("/echo.Echo/ClientStream", "echo")
    for i in range(3):
        client.send_message(sid, b"c%d" % i)
    _, s_ev = pump(client, server)
    assert [m.data for m in only(s_ev, MessageReceived)] == [b"c0", b"c1", b"c2"]
    assert not only(s_ev, StreamEnded)
    client.end_stream(sid)
    _, s_ev = pump(client, server)
    assert kinds(s_ev) == ["StreamEnded"]
    server.send_message(sid, b"sum")
    server.send_trailers(sid, StatusCode.OK)
    c_ev, _ = pump(client, server)
    assert one(c_ev, MessageReceived).data == b"sum"
    assert one(c_ev, TrailersReceived).status is StatusCode.OK
    with pytest.raises(StreamClosedError):
        client.send_message(sid, b"late")


def test_bidi_streaming_interleaved() -> None:
    client, server = connected()
    sid = client.start_call("/echo.Echo/Bidi", "echo")
    server_sid = None
    for i in range(3):
        client.send_message(sid, b"q%d" % i)
        _, s_ev = pump(client, server)
        if server_sid is None:
            server_sid = one(s_ev, CallStarted).stream_id
        server.send_message(sid, one(s_ev, MessageReceived).data.replace(b"q", b"a"))
        c_ev, _ = pump(client, server)
        assert one(c_ev, MessageReceived).data == b"a%d" % i
    client.end_stream(sid)
    _, s_ev = pump(client, server)
    assert kinds(s_ev) == ["StreamEnded"]
    server.send_trailers(sid, StatusCode.OK)
    c_ev, _ = pump(client, server)
    assert one(c_ev, TrailersReceived).status is StatusCode.OK


def test_many_calls_multiplexed() -> None:
    client, server = connected()
    sids = [client.start_call("/a.B/C", "svc") for _ in range(5)]
    assert sids == [1, 3, 5, 7, 9]
    for sid in reversed(sids):
        client.send_message(sid, b"%d" % sid, end=True)
    _, _s_ev = pump(client, server)
    for sid in sids:
        server.send_message(sid, b"r%d" % sid)
        server.send_trailers(sid, StatusCode.OK)
    c_ev, _ = pump(client, server)
    assert {(m.stream_id, m.data) for m in only(c_ev, MessageReceived)} == {(s, b"r%d" % s) for s in sids}
    assert len(only(c_ev, TrailersReceived)) == 5


# --- statuses and metadata --------------------------------------------------------------------------


def test_trailers_only_error_with_percent_encoded_message() -> None:
    client, server = connected()
    sid = client.start_call("/echo.Echo/Missing", "echo")
    client.send_message(sid, b"x", end=True)
    pump(client, server)
    server.send_trailers(
        sid, StatusCode.KITEX_UNKNOWN_SERVICE, "unknown service 50%\nliné", metadata=[("biz-status", "1001")]
    )
    frames = server.data_to_send()
    c_ev = client.receive_data(frames)
    assert kinds(c_ev) == ["TrailersReceived"]
    t = one(c_ev, TrailersReceived)
    assert t.trailers_only
    assert t.status is StatusCode.KITEX_UNKNOWN_SERVICE and t.raw_status == 20
    assert t.message == "unknown service 50%\nliné"
    assert t.metadata == (("biz-status", "1001"),)


def test_nonstandard_status_maps_to_unknown_but_keeps_raw() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    client.end_stream(sid)
    pump(client, server)
    server.send_trailers(sid, 99, "odd")
    c_ev, _ = pump(client, server)
    t = one(c_ev, TrailersReceived)
    assert t.status is StatusCode.UNKNOWN and t.raw_status == 99


def test_binary_metadata_and_status_details_both_ways() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc", metadata=[("trace-bin", b"\x00\x01\xfe\xff"), ("k", "v")])
    client.send_message(sid, b"", end=True)
    _, s_ev = pump(client, server)
    assert one(s_ev, CallStarted).metadata == (("trace-bin", b"\x00\x01\xfe\xff"), ("k", "v"))
    server.send_headers(sid, metadata=[("h-bin", b"\xff")])
    server.send_trailers(sid, StatusCode.INTERNAL, "bad", metadata=[("t-bin", b"\x00")], details=b"\x08\x0d")
    c_ev, _ = pump(client, server)
    assert one(c_ev, HeadersReceived).metadata == (("h-bin", b"\xff"),)
    t = one(c_ev, TrailersReceived)
    assert t.metadata == (("t-bin", b"\x00"),) and t.details == b"\x08\x0d"


def test_grpc_timeout_round_trip() -> None:
    client, server = connected()
    for timeout, expected in [(0.25, 0.25), (3.0, 3.0), (0.0, 0.0), (None, None)]:
        sid = client.start_call("/a.B/C", "svc", timeout=timeout)
        client.end_stream(sid)
        _, s_ev = pump(client, server)
        got = one(s_ev, CallStarted).timeout
        assert got == (pytest.approx(expected) if expected is not None else None)
        server.send_trailers(sid, StatusCode.OK)
        pump(client, server)


def test_thrift_subtype_is_echoed() -> None:
    client, server = connected()
    sid = client.start_call("/echo.Echo/Unary", "echo", content_subtype="thrift")
    client.send_message(sid, b"t", end=True)
    _, s_ev = pump(client, server)
    started = one(s_ev, CallStarted)
    assert started.content_type == "application/grpc+thrift" and started.content_subtype == "thrift"
    server.send_message(sid, b"r")
    server.send_trailers(sid, StatusCode.OK)
    c_ev, _ = pump(client, server)
    assert one(c_ev, HeadersReceived).content_type == "application/grpc+thrift"


def test_gzip_messages_both_ways() -> None:
    client, server = connected()
    body = b"hello " * 500
    sid = client.start_call("/a.B/C", "svc", encoding="gzip")
    client.send_message(sid, body, compressed=True, end=True)
    _, s_ev = pump(client, server)
    started = one(s_ev, CallStarted)
    assert started.encoding == "gzip" and started.accept_encoding == ("identity", "deflate", "gzip")
    msg = one(s_ev, MessageReceived)
    assert msg.data == body
    assert msg.flow_controlled_length == 5 + len(gzip_compress(body))
    server.send_headers(sid, encoding="gzip")
    server.send_message(sid, body, compressed=True)
    server.send_message(sid, b"plain")  # per-message flag: uncompressed is allowed too
    server.send_trailers(sid, StatusCode.OK)
    c_ev, _ = pump(client, server)
    assert one(c_ev, HeadersReceived).encoding == "gzip"
    assert [m.data for m in only(c_ev, MessageReceived)] == [body, b"plain"]


def test_compressed_without_encoding_is_a_caller_error() -> None:
    client, _server = connected()
    sid = client.start_call("/a.B/C", "svc")
    with pytest.raises(ValueError):
        client.send_message(sid, b"x", compressed=True)
    with pytest.raises(ValueError):
        client.start_call("/a.B/C", "svc", encoding="snappy")


# --- rejections ---------------------------------------------------------------------------------


def test_oversize_request_is_resource_exhausted_and_connection_lives() -> None:
    client, server = connected(server_config=GrpcConnectionConfig(max_message_size=100))
    sid = client.start_call("/a.B/C", "svc")
    client.send_message(sid, b"x" * 101, end=True)
    c_ev, s_ev = pump(client, server)
    rejected = one(s_ev, CallRejected)
    assert rejected.status is StatusCode.RESOURCE_EXHAUSTED and rejected.stream_id == sid
    assert not only(s_ev, MessageReceived)
    t = one(c_ev, TrailersReceived)
    assert t.status is StatusCode.RESOURCE_EXHAUSTED and "larger than max" in t.message
    # The connection still works.
    sid2 = client.start_call("/a.B/C", "svc")
    client.send_message(sid2, b"y" * 100, end=True)
    _, s_ev = pump(client, server)
    assert one(s_ev, MessageReceived).data == b"y" * 100


def test_oversize_response_is_rejected_on_the_client() -> None:
    client, server = connected(client_config=GrpcConnectionConfig(max_message_size=10))
    sid = client.start_call("/a.B/C", "svc")
    client.end_stream(sid)
    pump(client, server)
    server.send_message(sid, b"z" * 11)
    c_ev, s_ev = pump(client, server)
    assert one(c_ev, CallRejected).status is StatusCode.RESOURCE_EXHAUSTED
    assert one(s_ev, StreamReset).error_code == ErrorCodes.CANCEL
    with pytest.raises(StreamClosedError):
        server.send_trailers(sid, StatusCode.OK)


def test_gzip_bomb_in_a_request_is_resource_exhausted() -> None:
    client, server = connected(server_config=GrpcConnectionConfig(max_message_size=1000))
    sid = client.start_call("/a.B/C", "svc", encoding="gzip")
    client.send_message(sid, b"\x00" * 100_000, compressed=True, end=True)
    c_ev, s_ev = pump(client, server)
    assert one(s_ev, CallRejected).status is StatusCode.RESOURCE_EXHAUSTED
    assert one(c_ev, TrailersReceived).status is StatusCode.RESOURCE_EXHAUSTED


def test_malformed_frame_prefix_is_internal() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    client._conn.send_data(sid, b"\x02\x00\x00\x00\x01x")  # flag 2 does not exist
    c_ev, s_ev = pump(client, server)
    assert one(s_ev, CallRejected).status is StatusCode.INTERNAL
    t = one(c_ev, TrailersReceived)
    assert t.status is StatusCode.INTERNAL and t.trailers_only
    assert client.open_calls == 0 and server.open_calls == 0


def test_compressed_flag_without_encoding_is_internal() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    client._conn.send_data(sid, encode_message(gzip_compress(b"x"), True), end_stream=True)
    c_ev, s_ev = pump(client, server)
    assert one(s_ev, CallRejected).status is StatusCode.INTERNAL
    assert one(c_ev, TrailersReceived).status is StatusCode.INTERNAL


def test_half_close_inside_a_message_is_internal() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    client._conn.send_data(sid, encode_message(b"hello")[:4], end_stream=True)
    c_ev, s_ev = pump(client, server)
    assert one(s_ev, CallRejected).status is StatusCode.INTERNAL
    assert one(c_ev, TrailersReceived).status is StatusCode.INTERNAL


def raw_client() -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False)
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    return conn


def raw_request(conn: h2.connection.H2Connection, headers: list[tuple[bytes, bytes]]) -> int:
    sid: int = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers, end_stream=True)
    return sid


BASE = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a.B/C"), (b":authority", b"svc")]


@pytest.mark.parametrize(
    ("headers", "http_status", "status"),
    [
        ([*BASE, (b"content-type", b"application/json")], 415, StatusCode.INVALID_ARGUMENT),
        (BASE, 415, StatusCode.INVALID_ARGUMENT),
        ([(b":method", b"GET"), *BASE[1:], (b"content-type", b"application/grpc")], 405, StatusCode.INTERNAL),
        (
            [*BASE, (b"content-type", b"application/grpc"), (b"grpc-timeout", b"10 seconds")],
            400,
            StatusCode.INTERNAL,
        ),
        (
            [*BASE, (b"content-type", b"application/grpc"), (b"grpc-encoding", b"snappy")],
            200,
            StatusCode.UNIMPLEMENTED,
        ),
        ([*BASE, (b"content-type", b"application/grpc"), (b"x-bin", b"!!")], 400, StatusCode.INTERNAL),
    ],
    ids=["json", "missing-content-type", "get", "bad-timeout", "unknown-encoding", "bad-bin"],
)
def test_bad_requests_are_answered_trailers_only(
    headers: list[tuple[bytes, bytes]], http_status: int, status: StatusCode
) -> None:
    client = raw_client()
    server = GrpcServerConnection()
    pump(client, server)
    sid = raw_request(client, headers)
    c_ev, s_ev = pump(client, server)
    rejected = one(s_ev, CallRejected)
    assert (rejected.status, rejected.http_status) == (status, http_status)
    assert not only(s_ev, CallStarted)
    (resp,) = [e for e in c_ev if isinstance(e, h2.events.ResponseReceived)]
    got = dict(resp.headers)
    assert got[b":status"] == str(http_status).encode()
    assert got[b"grpc-status"] == str(int(status)).encode()
    assert resp.stream_ended is not None and resp.stream_id == sid


def test_client_maps_http_errors_without_grpc_status() -> None:
    config = h2.config.H2Configuration(client_side=False, validate_outbound_headers=False)
    raw = h2.connection.H2Connection(config)
    client2 = GrpcClientConnection()
    raw.initiate_connection()
    pump(client2, raw)
    sid = client2.start_call("/a.B/C", "svc")
    pump(client2, raw)
    raw.send_headers(sid, [(b":status", b"503"), (b"content-type", b"text/html")], end_stream=True)
    c_ev, _ = pump(client2, raw)
    rejected = one(c_ev, CallRejected)
    assert rejected.status is StatusCode.UNAVAILABLE and rejected.http_status == 503
    # A 200 without a gRPC content-type, then data and no trailers.
    sid = client2.start_call("/a.B/C", "svc")
    pump(client2, raw)
    raw.send_headers(sid, [(b":status", b"200"), (b"content-type", b"text/html")])
    c_ev, _ = pump(client2, raw)
    assert one(c_ev, CallRejected).status is StatusCode.UNKNOWN
    sid = client2.start_call("/a.B/C", "svc")
    pump(client2, raw)
    raw.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    raw.send_data(sid, encode_message(b"r"), end_stream=True)
    c_ev, _ = pump(client2, raw)
    assert kinds(c_ev) == ["HeadersReceived", "MessageReceived", "CallRejected"]
    assert "without sending trailers" in one(c_ev, CallRejected).message


# --- resets and GOAWAY ------------------------------------------------------------------------------


def test_client_reset_reaches_server() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    client.send_message(sid, b"x")
    pump(client, server)
    client.reset(sid)
    client.reset(sid)  # idempotent
    _, s_ev = pump(client, server)
    r = one(s_ev, StreamReset)
    assert (r.stream_id, r.error_code, r.remote) == (sid, ErrorCodes.CANCEL, True)
    with pytest.raises(StreamClosedError):
        server.send_message(sid, b"late")
    assert server.open_calls == 0


def test_server_reset_reaches_client() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    pump(client, server)
    server.reset(sid, ErrorCodes.REFUSED_STREAM)
    c_ev, _ = pump(client, server)
    assert one(c_ev, StreamReset).error_code == ErrorCodes.REFUSED_STREAM
    with pytest.raises(StreamClosedError):
        client.end_stream(sid)


def test_goaway_terminates() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    pump(client, server)
    server.close(ErrorCodes.ENHANCE_YOUR_CALM, additional_data=b"too many pings")
    c_ev, _ = pump(client, server)
    ct = one(c_ev, ConnectionTerminated)
    assert (ct.error_code, ct.last_stream_id, ct.additional_data, ct.graceful) == (
        ErrorCodes.ENHANCE_YOUR_CALM,
        sid,
        b"too many pings",
        False,
    )
    assert client.closing and client.open_calls == 0
    with pytest.raises(ConnectionClosedError):
        client.start_call("/a.B/C", "svc")


def test_graceful_goaway_lets_calls_finish_and_refuses_new_ones() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    client.send_message(sid, b"1")
    pump(client, server)
    # grpc-go drains with GOAWAY(2^31-1) then a PING, in one write.
    server.close(graceful=True)
    server.ping(b"drain000")
    server.close(graceful=True, last_stream_id=server.highest_inbound_stream_id)
    c_ev, s_ev = pump(client, server)
    terms = only(c_ev, ConnectionTerminated)
    assert [t.graceful for t in terms] == [True, True] and terms[-1].last_stream_id == sid
    assert one(s_ev, PingAcked).data == b"drain000"
    assert one(c_ev, PingReceived).data == b"drain000"
    with pytest.raises(ConnectionClosedError):
        client.start_call("/a.B/C", "svc")
    # The in-flight call completes in both directions.
    client.send_message(sid, b"2", end=True)
    _, s_ev = pump(client, server)
    assert [m.data for m in only(s_ev, MessageReceived)] == [b"2"] and only(s_ev, StreamEnded)
    server.send_message(sid, b"done")
    server.send_trailers(sid, StatusCode.OK)
    c_ev, _ = pump(client, server)
    assert one(c_ev, TrailersReceived).status is StatusCode.OK


def test_server_refuses_streams_above_its_graceful_goaway() -> None:
    # A plain h2 client would die on the GOAWAY it reads first; use the draining-aware subclass.
    client = PatchedH2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    server = GrpcServerConnection()
    pump(client, server)
    server.close(graceful=True, last_stream_id=0)
    # The raw client ignores the GOAWAY it has not read yet and opens a call anyway.
    sid = raw_request(client, [*BASE, (b"content-type", b"application/grpc")])
    c_ev, s_ev = pump(client, server)
    assert not only(s_ev, CallStarted)
    resets = [e for e in c_ev if isinstance(e, h2.events.StreamReset)]
    assert resets and resets[0].stream_id == sid and resets[0].error_code == ErrorCodes.REFUSED_STREAM


def test_graceful_goaway_drops_calls_the_server_never_saw() -> None:
    client, server = connected()
    sid1 = client.start_call("/a.B/C", "svc")
    pump(client, server)
    sid3 = client.start_call("/a.B/C", "svc")  # still in flight when the server drains
    client.send_message(sid3, b"x" * 70_000)
    assert client.pending_bytes(sid3) > 0
    server.close(graceful=True, last_stream_id=sid1)
    c_ev = client.receive_data(server.data_to_send())
    assert one(c_ev, ConnectionTerminated).last_stream_id == sid1
    # The shell retries sid3 elsewhere (sid3 > last_stream_id); the core forgot it.
    assert client.open_calls == 1 and client.pending_bytes(sid3) == 0
    with pytest.raises(StreamClosedError):
        client.send_message(sid3, b"y")


def test_http2_violation_raises_with_error_code() -> None:
    server = GrpcServerConnection()
    with pytest.raises(H2ConnectionError) as info:
        server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert info.value.error_code == ErrorCodes.PROTOCOL_ERROR
    assert info.value.grpc_status is StatusCode.UNAVAILABLE
    assert server.data_to_send()  # a GOAWAY waits to be flushed


# --- flow control -------------------------------------------------------------------------------


def test_flow_control_stops_at_the_window_and_ack_resumes() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    pump(client, server)
    # Five 20 KiB messages: the default 64 KiB windows take three and part of the fourth.
    for i in range(5):
        server.send_message(sid, bytes([i]) * 20_000)
    assert server.pending_bytes(sid) == 5 * 20_005 - 65_535
    server.send_trailers(sid, StatusCode.OK)  # waits behind the pending data
    c_ev, _s_ev = pump(client, server)
    received = only(c_ev, MessageReceived)
    assert 1 <= len(received) < 5
    assert not only(c_ev, TrailersReceived)
    assert server.pending_bytes(sid) > 0
    # A reader that does not acknowledge keeps the writer stopped.
    assert pump(client, server) == ([], [])
    # Consuming one message lets more through, reported to the writer as WindowUpdated.
    pending = server.pending_bytes(sid)
    client.acknowledge_received(sid, received[0].flow_controlled_length)
    c_ev2, s_ev2 = pump(client, server)
    updated = only(s_ev2, WindowUpdated)
    assert updated and updated[-1].stream_id == sid
    assert updated[-1].pending == server.pending_bytes(sid) < pending
    # A reader that keeps up receives everything, then the trailers.
    unacked = received[1:] + only(c_ev2, MessageReceived)
    got = [*received, *only(c_ev2, MessageReceived)]
    for _ in range(20):
        if only(c_ev2, TrailersReceived):
            break
        ack_all(client, unacked)  # type: ignore[arg-type]
        c_ev2, _ = pump(client, server)
        unacked = only(c_ev2, MessageReceived)
        got += unacked
    assert [m.data for m in got] == [bytes([i]) * 20_000 for i in range(5)]
    assert one(c_ev2, TrailersReceived).status is StatusCode.OK
    assert server.pending_bytes(sid) == 0


def test_unacknowledged_messages_are_bounded_by_the_window() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    pump(client, server)
    for _ in range(200):
        server.send_message(sid, b"m" * 995)  # 1000 bytes on the wire
    c_ev, _ = pump(client, server)
    assert sum(len(m.data) + 5 for m in only(c_ev, MessageReceived)) <= 65_535
    assert server.pending_bytes(sid) >= 200 * 1000 - 65_535


def _stream_acked(client: GrpcClientConnection, server: GrpcServerConnection, sid: int, count: int) -> int:
    """The server sends ``count`` 100-byte messages on ``sid``; the client takes (acks) each one.

    Returns how many arrived; pumps at most ``4 * count`` rounds."""
    for _ in range(count):
        server.send_message(sid, b"s" * 95)
    got = 0
    for _ in range(4 * count):
        c_ev, _s = pump(client, server)
        received = only(c_ev, MessageReceived)
        if not received and not server.pending_bytes(sid):
            break
        ack_all(client, received)  # type: ignore[arg-type]
        got += len(received)
    return got


def test_acknowledgements_keep_a_long_stream_flowing() -> None:
    # 5,000 x 100 B = 500 KB through 64 KiB windows: acknowledgements handed to h2 (which batches its
    # WINDOW_UPDATEs) must reopen both windows in time.
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    pump(client, server)
    assert _stream_acked(client, server, sid, 5_000) == 5_000
    assert server.pending_bytes(sid) == 0


def test_acknowledge_says_whether_a_window_update_is_waiting() -> None:
    # h2 sends WINDOW_UPDATE once half a window was consumed: below that nothing is queued and the
    # shell need not schedule a write; the acknowledgement that crosses it queues both updates.
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    pump(client, server)
    for _ in range(40):
        server.send_message(sid, b"s" * 995)  # 1,000 B on the wire each
    c_ev, _ = pump(client, server)
    received = only(c_ev, MessageReceived)
    assert len(received) == 40
    told = [client.acknowledge_received(sid, m.flow_controlled_length) for m in received]
    assert told == [False] * 32 + [True] + [False] * 7  # 33,000 B > 65,535 / 2
    data = client.data_to_send()
    frames = []  # (type, stream id) of each frame queued
    while data:
        length = int.from_bytes(data[:3], "big")
        frames.append((data[3], int.from_bytes(data[5:9], "big")))
        data = data[9 + length :]
    assert sorted(frames) == [(0x8, 0), (0x8, sid)]  # WINDOW_UPDATE for the connection and the stream
    assert not client.acknowledge_received(sid, 0)


def test_many_short_calls_never_stall_the_connection_window() -> None:
    # Each call takes 2 KB, below half of any window: were the acknowledgements of a call that ended
    # lost, 40 calls would hold more than the 64 KiB connection window and the last calls would stall.
    client, server = connected()
    for _ in range(40):
        sid = client.start_call("/a.B/C", "svc")
        client.send_message(sid, b"q", end=True)
        pump(client, server)
        assert _stream_acked(client, server, sid, 20) == 20
        server.send_trailers(sid, StatusCode.OK)
        c_ev, _ = pump(client, server)
        assert one(c_ev, TrailersReceived).status is StatusCode.OK
        assert client.open_calls == 0


def test_acknowledgements_of_many_open_calls_never_starve_the_connection() -> None:
    # 200 calls stay open, each taking (acknowledging) 4 x 100 B, below half of its stream window:
    # 80 KB in all must flow through the 64 KiB connection window.
    client, server = connected()
    sids = []
    for _ in range(200):
        sid = client.start_call("/a.B/C", "svc")
        sids.append(sid)
    pump(client, server)
    for sid in sids:
        assert _stream_acked(client, server, sid, 4) == 4
    assert all(server.pending_bytes(sid) == 0 for sid in sids)


def test_message_larger_than_the_window_still_arrives_without_acks() -> None:
    # Bytes of an incomplete message are returned at once (bounded by max_message_size), so a
    # message larger than the window cannot deadlock the call.
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    client.send_message(sid, b"m" * 300_000, end=True)
    _, s_ev = pump(client, server)
    msg = one(s_ev, MessageReceived)
    assert len(msg.data) == 300_000 and msg.flow_controlled_length <= 65_535
    assert only(s_ev, StreamEnded)


def test_client_end_stream_waits_behind_pending_data() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    client.send_message(sid, b"a" * 70_000, end=True)
    assert client.pending_bytes(sid) == 70_005 - 65_535
    with pytest.raises(StreamClosedError):
        client.send_message(sid, b"more")
    _, s_ev = pump(client, server)
    # The server holds nothing back for partial data, so the rest flows and END_STREAM follows it.
    assert one(s_ev, MessageReceived).data == b"a" * 70_000
    assert only(s_ev, StreamEnded)
    assert client.pending_bytes(sid) == 0


def test_bigger_windows_and_frame_size_from_config() -> None:
    cfg = GrpcConnectionConfig(
        initial_window_size=1 << 20, initial_connection_window_size=1 << 20, max_frame_size=1 << 16
    )
    client, server = connected(server_config=cfg)
    sid = client.start_call("/a.B/C", "svc")
    client.send_message(sid, b"b" * 500_000)
    assert client.pending_bytes(sid) == 0
    _, s_ev = pump(client, server)
    assert one(s_ev, MessageReceived).data == b"b" * 500_000


def test_reset_releases_held_window() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    pump(client, server)
    server.send_message(sid, b"q" * 60_000)
    c_ev, _ = pump(client, server)
    assert one(c_ev, MessageReceived)
    client.reset(sid)  # never acknowledged: the reset hands the window back
    pump(client, server)
    sid2 = client.start_call("/a.B/C", "svc")
    pump(client, server)
    server.send_message(sid2, b"w" * 60_000)
    c_ev, _ = pump(client, server)
    assert one(c_ev, MessageReceived).data == b"w" * 60_000


def test_acknowledging_unknown_streams_is_harmless() -> None:
    client, _ = connected()
    client.acknowledge_received(99, 1000)
    client.acknowledge_received(1, 0)
    assert client.pending_bytes(99) == 0 and client.send_window(99) == 0


# --- settings, ping -------------------------------------------------------------------------------


def test_max_concurrent_streams_is_surfaced_and_enforced() -> None:
    client = GrpcClientConnection()
    server = GrpcServerConnection(GrpcConnectionConfig(max_concurrent_streams=2))
    c_ev, _ = pump(client, server)
    assert one(c_ev, SettingsChanged).max_concurrent_streams == 2
    assert client.peer_max_concurrent_streams == 2 and client.available_streams == 2
    a = client.start_call("/a.B/C", "svc")
    client.start_call("/a.B/C", "svc")
    assert client.available_streams == 0
    with pytest.raises(TooManyStreamsError):
        client.start_call("/a.B/C", "svc")
    client.reset(a)
    assert client.available_streams == 1


def test_ping_round_trip() -> None:
    client, server = connected()
    client.ping(b"12345678")
    c_ev, s_ev = pump(client, server)
    assert one(s_ev, PingReceived).data == b"12345678"
    assert one(c_ev, PingAcked).data == b"12345678"
    with pytest.raises(ValueError):
        client.ping(b"short")


def test_header_list_size_limits() -> None:
    client, _server = connected(server_config=GrpcConnectionConfig(max_header_list_size=200))
    with pytest.raises(gh.GrpcHeaderError):
        client.start_call("/a.B/C", "svc", metadata=[("big", "v" * 300)])
    client2, server2 = connected(client_config=GrpcConnectionConfig(max_header_list_size=300))
    sid = client2.start_call("/a.B/C", "svc")
    pump(client2, server2)
    with pytest.raises(gh.GrpcHeaderError):
        server2.send_headers(sid, metadata=[("big", "v" * 300)])
    with pytest.raises(gh.GrpcHeaderError):
        server2.send_trailers(sid, StatusCode.OK, metadata=[("big", "v" * 300)])


def test_config_validation() -> None:
    for bad in (
        {"max_message_size": -1},
        {"initial_window_size": 2**31},
        {"initial_connection_window_size": 1000},
        {"max_frame_size": 100},
        {"max_header_list_size": 0},
        {"max_concurrent_streams": -1},
        {"scheme": "ftp"},
    ):
        with pytest.raises(ValueError):
            GrpcConnectionConfig(**bad)


def test_server_headers_twice_and_unknown_streams() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    pump(client, server)
    server.send_headers(sid)
    with pytest.raises(StreamClosedError):
        server.send_headers(sid)
    with pytest.raises(StreamClosedError):
        server.send_message(77, b"")
    sid2 = client.start_call("/a.B/C", "svc")
    pump(client, server)
    with pytest.raises(ValueError):
        server.send_headers(sid2, encoding="br")


def test_request_trailers_are_rejected() -> None:
    client = raw_client()
    server = GrpcServerConnection()
    pump(client, server)
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, [*BASE, (b"content-type", b"application/grpc")])
    client.send_data(sid, encode_message(b"x"))
    client.send_headers(sid, [(b"x-trailer", b"1")], end_stream=True)
    _, s_ev = pump(client, server)
    assert one(s_ev, CallRejected).message == "unexpected trailers in request"


def test_goaway_frame_bytes_are_standard() -> None:
    _client, server = connected()
    server.close(graceful=True, last_stream_id=5, additional_data=b"bye")
    wire = server.data_to_send()
    frame, _ = GoAwayFrame.parse_frame_header(memoryview(wire[:9]))
    assert isinstance(frame, GoAwayFrame)
    frame.parse_body(memoryview(wire[9:]))
    assert (frame.last_stream_id, frame.error_code, frame.additional_data) == (5, 0, b"bye")


# --- wire compatibility with grpcio (a real socket, in the test only) -------------------------------


def _drive_client(client: GrpcClientConnection, sock: socket.socket, sid: int) -> list[Event]:
    """Shuttle bytes until the call ends; acknowledge messages as a reader would."""
    events: list[Event] = []
    while True:
        out = client.data_to_send()
        if out:
            sock.sendall(out)
        if any(isinstance(e, TrailersReceived | CallRejected | StreamReset) for e in events):
            return events
        data = sock.recv(65536)
        assert data, "grpcio closed the connection"
        new = client.receive_data(data)
        ack_all(client, new)
        events += new


def test_grpcio_server_accepts_our_requests() -> None:
    from concurrent import futures

    import grpc  # a hard dependency of kitex_grpc: never skipped

    def unary(request: bytes, context: object) -> bytes:
        md = dict(context.invocation_metadata())  # type: ignore[attr-defined]
        context.set_trailing_metadata((("echo-bin", md["blob-bin"]), ("n", md["n"])))  # type: ignore[attr-defined]
        remaining = context.time_remaining()  # type: ignore[attr-defined]
        assert remaining is not None and 0 < remaining <= 5
        if request == b"fail":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "bad 100% \u2713")  # type: ignore[attr-defined]
        return request[::-1]

    def stream(request: bytes, context: object) -> Iterator[bytes]:
        for i in range(3):
            yield request + b"%d" % i

    handler = grpc.method_handlers_generic_handler(
        "echo.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), compression=None)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            client = GrpcClientConnection()
            md: list[tuple[str, str | bytes]] = [("blob-bin", b"\x00\x01\xff"), ("n", "7")]
            sid = client.start_call("/echo.Echo/Unary", "echo", metadata=md, timeout=5.0, encoding="gzip")
            client.send_message(sid, b"hello", compressed=True, end=True)
            events = _drive_client(client, sock, sid)
            assert one(events, MessageReceived).data == b"olleh"
            t = one(events, TrailersReceived)
            assert t.status is StatusCode.OK
            assert ("echo-bin", b"\x00\x01\xff") in t.metadata and ("n", "7") in t.metadata

            sid = client.start_call("/echo.Echo/Unary", "echo", metadata=md, timeout=5.0)
            client.send_message(sid, b"fail", end=True)
            t = one(_drive_client(client, sock, sid), TrailersReceived)
            assert t.status is StatusCode.FAILED_PRECONDITION and t.message == "bad 100% \u2713"

            sid = client.start_call("/echo.Echo/Stream", "echo")
            client.send_message(sid, b"s", end=True)
            events = _drive_client(client, sock, sid)
            assert [m.data for m in only(events, MessageReceived)] == [b"s0", b"s1", b"s2"]

            sid = client.start_call("/echo.Echo/Nope", "echo")
            client.send_message(sid, b"", end=True)
            assert one(_drive_client(client, sock, sid), TrailersReceived).status is StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)


def test_grpcio_client_talks_to_our_server_core() -> None:
    import grpc  # a hard dependency of kitex_grpc: never skipped

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[CallStarted] = []

    def serve() -> None:
        conn, _ = listener.accept()
        core = GrpcServerConnection()
        requests: dict[int, list[bytes]] = {}
        with conn:
            conn.sendall(core.data_to_send())
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                for ev in core.receive_data(data):
                    if isinstance(ev, CallStarted):
                        seen.append(ev)
                        requests[ev.stream_id] = []
                    elif isinstance(ev, MessageReceived):
                        requests[ev.stream_id].append(ev.data)
                        core.acknowledge_received(ev.stream_id, ev.flow_controlled_length)
                    elif isinstance(ev, StreamEnded):
                        body = b"".join(requests.pop(ev.stream_id))
                        if body == b"boom":
                            core.send_trailers(ev.stream_id, StatusCode.ABORTED, "it broke: 50%")
                        else:
                            core.send_headers(ev.stream_id, metadata=[("h-bin", b"\xfe")])
                            core.send_message(ev.stream_id, body.upper())
                            core.send_trailers(ev.stream_id, StatusCode.OK, metadata=[("biz-status", "0")])
                out = core.data_to_send()
                if out:
                    conn.sendall(out)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/echo.Echo/Unary")
            reply, rpc = call.with_call(b"hi", timeout=5, metadata=(("x-bin", b"\x01"), ("k", "v")))
            assert reply == b"HI"
            assert ("h-bin", b"\xfe") in rpc.initial_metadata()
            assert ("biz-status", "0") in rpc.trailing_metadata()
            with pytest.raises(grpc.RpcError) as info:
                call(b"boom", timeout=5)
            assert info.value.code() == grpc.StatusCode.ABORTED
            assert info.value.details() == "it broke: 50%"
    finally:
        listener.close()
    started = seen[0]
    assert started.path == "/echo.Echo/Unary" and started.content_subtype == ""
    assert ("x-bin", b"\x01") in started.metadata and ("k", "v") in started.metadata
    assert started.timeout is not None and 0 < started.timeout <= 5.1  # grpcio rounds grpc-timeout up


# --- fast paths: memoised HPACK and the lean send path (pinned to hpack 4 / h2 4) -----------------


def _header_lists() -> list[list[tuple[bytes, bytes]]]:
    request = gh.build_request_headers(
        "/echo.v1.Echo/Unary", "echo", metadata=[("k", "v"), ("b-bin", b"\x00")]
    )
    response = gh.build_response_headers()
    ok = gh.build_trailers(StatusCode.OK)
    lists = [request, response, ok, request, response, ok]
    # A per-call value (each one a new dynamic-table entry) and a value too big for the table.
    lists += [[*request, (b"grpc-timeout", f"{n}m".encode())] for n in range(1, 40)]
    lists += [[(b"x-big", b"v" * 5000)], request, ok]
    return lists


def test_caching_encoder_writes_exactly_what_hpack_writes() -> None:
    import hpack

    from kitex_grpc.protocol.h2_hpack import CachingEncoder

    plain, caching = hpack.Encoder(), CachingEncoder()
    for i, headers in enumerate(_header_lists()):
        if i == 20:  # a SETTINGS_HEADER_TABLE_SIZE change: the size update leads the next block
            plain.header_table_size = caching.header_table_size = 256
        mixed: list[object] = [*headers, hpack.NeverIndexedHeaderTuple(b"secret", b"s"), (b"t", b"3", True)]
        assert caching.encode(mixed) == plain.encode(mixed)
        assert caching.encode(headers) == plain.encode(headers)


def test_caching_decoder_memo_is_dropped_when_the_table_changes() -> None:
    """The same block bytes mean other headers once the dynamic table moved (forces the slow path)."""
    import hpack

    from kitex_grpc.protocol.h2_hpack import CachingDecoder

    encoder = hpack.Encoder()
    decoder, reference = CachingDecoder(), hpack.Decoder()
    first = encoder.encode([(b"a", b"1")])  # literal with incremental indexing: entry 62 is a=1
    indexed = encoder.encode([(b"a", b"1")])  # one byte: index 62
    assert indexed == b"\xbe"
    assert decoder.decode(first, raw=True) == reference.decode(first, raw=True)
    assert decoder.decode(indexed, raw=True) == [(b"a", b"1")]
    assert decoder.decode(indexed, raw=True) == [(b"a", b"1")]  # memo hit
    other = hpack.Encoder().encode([(b"b", b"2")])  # adds b=2 in front: index 62 is now b=2
    assert decoder.decode(other, raw=True) == reference.decode(other, raw=True)
    assert decoder.decode(indexed, raw=True) == [(b"b", b"2")]
    decoder.max_header_list_size = 10  # a limit lowered later is still enforced on a memo hit
    with pytest.raises(hpack.OversizedHeaderListError):
        decoder.decode(indexed, raw=True)


def test_caching_decoder_matches_hpack_on_grpc_header_blocks() -> None:
    import hpack

    from kitex_grpc.protocol.h2_hpack import CachingDecoder

    encoder = hpack.Encoder()
    decoder, reference = CachingDecoder(), hpack.Decoder()
    for headers in _header_lists() * 2:
        block = encoder.encode(headers)
        assert decoder.decode(block, raw=True) == reference.decode(block, raw=True)


def _drive(conn: h2.connection.H2Connection) -> bytes:
    """The same commands on a client connection; returns every byte it wrote."""
    conn.initiate_connection()
    request = gh.build_request_headers("/a.B/C", "svc", metadata=[("k", "v")])
    for sid in (1, 3, 5):
        conn.send_headers(sid, request)
        conn.send_data(sid, encode_message(b"x" * sid * 100))
    conn.send_data(1, memoryview(encode_message(b"y")), end_stream=True)
    conn.send_headers(3, [(b"t", b"1")], end_stream=True)  # trailers
    conn.send_headers(7, [*request, (b"big", b"v" * 40_000)], end_stream=True)  # CONTINUATION frames
    conn.send_data(5, b"", end_stream=True)
    return conn.data_to_send()


def test_lean_send_path_writes_the_frames_h2_writes() -> None:
    plain = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, validate_outbound_headers=False)
    )
    lean = PatchedH2Connection(h2.config.H2Configuration(client_side=True, validate_outbound_headers=False))
    assert _drive(lean) == _drive(plain)
    for sid in (1, 3, 5, 7):
        assert lean.streams[sid].state_machine.state == plain.streams[sid].state_machine.state
        assert lean.local_flow_control_window(sid) == plain.local_flow_control_window(sid)
    assert lean.outbound_flow_control_window == plain.outbound_flow_control_window
    # An h2 peer accepts the lot.
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    lean2 = PatchedH2Connection(h2.config.H2Configuration(client_side=True, validate_outbound_headers=False))
    events = server.receive_data(_drive(lean2))
    assert len(only_h2(events, h2.events.RequestReceived)) == 4
    assert len(only_h2(events, h2.events.StreamEnded)) == 4


def only_h2(events: list[h2.events.Event], kind: type[h2.events.Event]) -> list[h2.events.Event]:
    return [e for e in events if isinstance(e, kind)]


def test_lean_send_path_keeps_h2_errors() -> None:
    client, _server = connected()
    sid = client.start_call("/a.B/C", "svc")
    conn = client._conn
    with pytest.raises(h2.exceptions.FlowControlError):
        conn.send_data(sid, b"x" * 70_000)  # over the window: h2's own path and error
    conn.send_data(sid, b"x", end_stream=True)
    with pytest.raises(h2.exceptions.ProtocolError):  # h2: "Invalid input SEND_DATA" once half-closed
        conn.send_data(sid, b"x")


def test_closed_streams_are_forgotten_without_scanning_on_every_call() -> None:
    client, server = connected()
    for _ in range(500):
        sid = client.start_call("/a.B/C", "svc")
        client.send_message(sid, b"hi", end=True)
        _, s_ev = pump(client, server)
        started = one(s_ev, CallStarted)
        server.send_message(started.stream_id, b"ok")
        server.send_trailers(started.stream_id, StatusCode.OK)
        c_ev, _ = pump(client, server)
        assert one(c_ev, TrailersReceived).status is StatusCode.OK
    assert client.available_streams > 1_000_000
    # h2 keeps closed streams until it counts open ones; both sides sweep as the table doubles.
    assert len(client._conn.streams) < 200 and len(server._conn.streams) < 200


# --- pipelined bidi with byte-level adversarial delivery ---------------------------------------------

# Read sizes cycled through when bytes cross the "wire": single bytes, splits inside the 9-byte frame
# header and the 5-byte gRPC prefix, a 4 KiB message and its frame (4113 / 4122 bytes), a full frame.
_SPLITS = (1, 1, 3, 8, 9, 10, 5, 4113, 4122, 2, 16_393, 7, 65_535, 1, 13, 4)


class _Wire:
    """One direction of a connection: bytes written by one core, read by the other in odd pieces."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.turn = 0

    def read(self) -> bytes:
        n = _SPLITS[self.turn % len(_SPLITS)]
        self.turn += 1
        chunk = bytes(self.buf[:n])
        del self.buf[:n]
        return chunk


def _inbound(core: GrpcClientConnection | GrpcServerConnection, sid: int) -> tuple[int, int]:
    h2conn = core._conn
    return (
        h2conn._inbound_flow_control_window_manager.current_window_size,
        h2conn.streams[sid]._inbound_window_manager.current_window_size,
    )


def _outbound(core: GrpcClientConnection | GrpcServerConnection, sid: int) -> tuple[int, int]:
    h2conn = core._conn
    return h2conn.outbound_flow_control_window, h2conn.streams[sid].outbound_flow_control_window


@pytest.mark.parametrize("lean", [True, False], ids=["lean-send", "h2-send"])
def test_pipelined_bidi_4k_messages_with_split_reads_completes_and_windows_agree(
    lean: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shape of the "GRPC_H2 pipelined bidi stall" report: 64 x 4 KiB messages in flight on one
    # stream, a writer that stops at 64 KiB pending, a server that echoes each message (and reads no
    # more while its own send waits), every read of the socket cut at awkward places (one byte at a
    # time, inside frame headers and gRPC prefixes). Each message must come back, nothing may stall,
    # and at the end each sender's window must equal what its peer's receiver granted: a WINDOW_UPDATE
    # or DATA frame lost or mis-parsed anywhere (lean send path, frame split, partial-message
    # accounting) shows up as a difference here.
    if not lean:  # h2's own HEADERS/DATA send path, as before the lean one
        monkeypatch.setattr(PatchedH2Connection, "send_data", h2.connection.H2Connection.send_data)
        monkeypatch.setattr(PatchedH2Connection, "send_headers", h2.connection.H2Connection.send_headers)
    total, inflight, high_water, body = 600, 64, 65_536, b"q" * 4_108  # 4113 bytes on the wire
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc")
    to_server, to_client = _Wire(), _Wire()
    client_queue: list[int] = []  # flow-controlled lengths of received, not yet taken messages
    server_queue: list[int] = []
    sent = echoed = got = idle = 0
    while got < total:
        progress = False
        to_server.buf += client.data_to_send()
        to_client.buf += server.data_to_send()
        if to_server.buf:
            for ev in server.receive_data(to_server.read()):
                if isinstance(ev, MessageReceived):
                    server_queue.append(ev.flow_controlled_length)
            progress = True
        if to_client.buf:
            for ev in client.receive_data(to_client.read()):
                if isinstance(ev, MessageReceived):
                    client_queue.append(ev.flow_controlled_length)
            progress = True
        # Client writer: at most `inflight` unanswered, and not above the high-water mark.
        if sent < total and sent - got < inflight and client.pending_bytes(sid) <= high_water:
            client.send_message(sid, body)
            sent += 1
            progress = True
        # Client reader: takes (and so acknowledges) one message per turn.
        if client_queue:
            client.acknowledge_received(sid, client_queue.pop(0))
            got += 1
            progress = True
        # Server handler: read one, echo it; reads nothing while its send is over the high-water mark.
        if server_queue and server.pending_bytes(sid) <= high_water:
            server.acknowledge_received(sid, server_queue.pop(0))
            server.send_message(sid, body)
            echoed += 1
            progress = True
        idle = 0 if progress else idle + 1
        assert idle < 3, f"stalled: sent={sent} echoed={echoed} got={got}"
    # Quiet: deliver what is still on the wire (split as before), then compare the windows.
    while True:
        to_server.buf += client.data_to_send()
        to_client.buf += server.data_to_send()
        if not to_server.buf and not to_client.buf:
            break
        if to_server.buf:
            assert not only(server.receive_data(to_server.read()), MessageReceived)
        if to_client.buf:
            assert not only(client.receive_data(to_client.read()), MessageReceived)
    assert (sent, echoed, got) == (total, total, total)
    assert client.pending_bytes(sid) == server.pending_bytes(sid) == 0
    assert _outbound(client, sid) == _inbound(server, sid)
    assert _outbound(server, sid) == _inbound(client, sid)
    client.end_stream(sid)
    server.send_trailers(sid, StatusCode.OK)
    c_ev, _ = pump(client, server)
    assert one(c_ev, TrailersReceived).status is StatusCode.OK


# --- the lean receive path (unpadded DATA cut out without hyperframe) ----------------------------


def _client_bytes() -> bytes:
    """Frames from a plain h2 client: preface, requests, DATA plain, padded, split, with END_STREAM."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    request = gh.build_request_headers("/a.B/C", "svc")
    for sid in (1, 3, 5):
        conn.send_headers(sid, request)
    conn.send_data(1, encode_message(b"a" * 100))
    conn.send_data(3, encode_message(b"b" * 50), pad_length=20)
    conn.send_data(1, encode_message(b"c" * 20_000)[:16_384])  # one max-size frame ...
    conn.send_data(1, encode_message(b"c" * 20_000)[16_384:])  # ... and the rest of the message
    conn.send_data(5, b"", end_stream=True)
    conn.send_data(3, encode_message(b"d"), end_stream=True, pad_length=3)
    conn.send_data(1, encode_message(b"e"), end_stream=True)
    return conn.data_to_send()


def _summary(events: list[h2.events.Event]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for ev in events:
        if isinstance(ev, h2.events.DataReceived):
            out.append(
                ("data", ev.stream_id, bytes(ev.data or b""), ev.flow_controlled_length, ev.stream_ended)
            )
        else:
            out.append((type(ev).__name__, getattr(ev, "stream_id", None)))
    return out


def _servers() -> tuple[h2.connection.H2Connection, PatchedH2Connection]:
    plain = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    lean = PatchedH2Connection(h2.config.H2Configuration(client_side=False))
    for conn in (plain, lean):
        conn.initiate_connection()
        conn.data_to_send()
    return plain, lean


@pytest.mark.parametrize("chunk", [1, 7, 9, 100, 1 << 20])
def test_lean_receive_path_sees_what_h2_sees(chunk: int) -> None:
    wire = _client_bytes()
    plain, lean = _servers()
    got: dict[str, list[h2.events.Event]] = {"plain": [], "lean": []}
    for start in range(0, len(wire), chunk):
        piece = wire[start : start + chunk]
        got["plain"] += plain.receive_data(piece)
        got["lean"] += lean.receive_data(piece)
    assert _summary(got["lean"]) == _summary(got["plain"])
    assert [e for e in _summary(got["lean"]) if e[0] == "data"]  # DATA was seen at all
    assert lean.data_to_send() == plain.data_to_send()
    assert lean.inbound_flow_control_window == plain.inbound_flow_control_window
    for sid in (1, 3, 5):
        assert lean.streams[sid].state_machine.state == plain.streams[sid].state_machine.state


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    n = len(payload)
    return bytes([n >> 16, (n >> 8) & 0xFF, n & 0xFF, kind, flags]) + stream_id.to_bytes(4, "big") + payload


_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(0x4, 0, 0, b"")


def _opened(sid: int = 1) -> bytes:
    import hpack

    block = hpack.Encoder().encode(gh.build_request_headers("/a.B/C", "svc"))
    return _PREFACE + _frame(0x1, 0x4, sid, block)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(_PREFACE + _frame(0x0, 0, 0, b"x"), "ProtocolError", id="data-on-stream-0"),
        pytest.param(_PREFACE + _frame(0x0, 0, 9, b"x"), "ProtocolError", id="data-on-idle-stream"),
        pytest.param(
            _opened() + _frame(0x0, 0, 1, b"x" * 16_385), "FrameTooLargeError", id="data-over-max-frame-size"
        ),
        pytest.param(
            _opened() + _frame(0x0, 0, 1, b"x" * 16_384) * 4 + _frame(0x0, 0, 1, b"x"),
            "FlowControlError",
            id="data-over-the-window",
        ),
        pytest.param(
            _PREFACE + _frame(0x1, 0, 1, b"") + _frame(0x0, 0, 1, b"x"),
            "ProtocolError",
            id="data-inside-a-header-block",
        ),
        # Not a connection error: the stream is reset (RST_STREAM STREAM_CLOSED) and the rest goes on.
        pytest.param(
            _opened() + _frame(0x0, 0x1, 1, b"x") + _frame(0x0, 0, 1, b"y"),
            "events",
            id="data-after-end-stream",
        ),
    ],
)
def test_lean_receive_path_fails_as_h2_fails(wire: bytes, expected: str) -> None:
    plain, lean = _servers()
    outcome: dict[str, tuple[object, ...]] = {}
    for name, conn in (("plain", plain), ("lean", lean)):
        try:
            events = conn.receive_data(wire)
        except h2.exceptions.ProtocolError as exc:
            outcome[name] = (type(exc).__name__, int(getattr(exc, "error_code", 0)))
        else:
            outcome[name] = ("events", tuple(_summary(events)))
        outcome[name] += (conn.data_to_send(),)  # the GOAWAY or RST_STREAM h2 queued
    assert outcome["lean"] == outcome["plain"]
    assert outcome["lean"][0] == expected


def test_unknown_request_encoding_lists_what_the_server_accepts() -> None:
    """gRPC compression.md: UNIMPLEMENTED, and grpc-accept-encoding names the encodings we inflate."""
    client = raw_client()
    server = GrpcServerConnection()
    pump(client, server)
    raw_request(client, [*BASE, (b"content-type", b"application/grpc"), (b"grpc-encoding", b"snappy")])
    c_ev, _ = pump(client, server)
    (resp,) = [e for e in c_ev if isinstance(e, h2.events.ResponseReceived)]
    got = dict(resp.headers)
    assert got[b"grpc-status"] == b"12"
    assert got[b"grpc-accept-encoding"] == b"identity,deflate,gzip"


def test_message_events_say_which_arrived_compressed() -> None:
    client, server = connected()
    sid = client.start_call("/a.B/C", "svc", encoding="deflate")
    client.send_message(sid, b"x" * 300, compressed=True)
    client.send_message(sid, b"y" * 300, compressed=False, end=True)
    _, s_ev = pump(client, server)
    got = [(m.data, m.compressed) for m in only(s_ev, MessageReceived)]
    assert got == [(b"x" * 300, True), (b"y" * 300, False)]
