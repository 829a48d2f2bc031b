"""RFC 9113 §8.1.1 / §8.2 / §8.3: a malformed header block resets its stream with PROTOCOL_ERROR, on the
server (requests, request trailers) and on the client (responses, trailers); the connection and its
other calls go on. Frame-level, against the sans-IO cores, with a raw h2 peer that sends what it is told."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes

from kitex_grpc.protocol.grpc_framing import encode_message
from kitex_grpc.protocol.h2_call import GrpcClientConnection, GrpcConnectionConfig, GrpcServerConnection
from kitex_grpc.protocol.h2_events import CallRejected, CallStarted, Event, StreamReset, TrailersReceived
from kitex_grpc.protocol.h2_validate import (
    check_request,
    check_request_trailers,
    check_response,
    check_response_trailers,
)
from tests.protocol.test_h2_call import one, only, pump

Headers = list[tuple[bytes, bytes]]
# As the transports configure the cores (transport/h2/config.py): h2's own inbound checks off, which
# would make each case below a connection error (GOAWAY) instead.
AS_TRANSPORTS = GrpcConnectionConfig(validate_inbound_headers=False)

GOOD_REQUEST: Headers = [
    (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a.B/C"), (b":authority", b"svc"),
    (b"content-type", b"application/grpc"), (b"te", b"trailers"),
]  # fmt: skip
GOOD_RESPONSE: Headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
GOOD_TRAILERS: Headers = [(b"grpc-status", b"0")]


def without(headers: Headers, name: bytes) -> Headers:
    return [h for h in headers if h[0] != name]


BAD_REQUESTS: dict[str, Headers] = {
    "upper-case-name": [*GOOD_REQUEST, (b"X-Trace", b"1")],
    "unknown-pseudo": [*GOOD_REQUEST[:4], (b":foo", b"bar"), *GOOD_REQUEST[4:]],
    "status-in-request": [*GOOD_REQUEST[:4], (b":status", b"200"), *GOOD_REQUEST[4:]],
    "pseudo-after-regular": [*without(GOOD_REQUEST, b":authority"), (b":authority", b"svc")],
    "connection": [*GOOD_REQUEST, (b"connection", b"keep-alive")],
    "keep-alive": [*GOOD_REQUEST, (b"keep-alive", b"timeout=5")],
    "proxy-connection": [*GOOD_REQUEST, (b"proxy-connection", b"keep-alive")],
    "transfer-encoding": [*GOOD_REQUEST, (b"transfer-encoding", b"chunked")],
    "upgrade": [*GOOD_REQUEST, (b"upgrade", b"h2c")],
    "te-not-trailers": [*without(GOOD_REQUEST, b"te"), (b"te", b"gzip")],
    "missing-scheme": without(GOOD_REQUEST, b":scheme"),
    "missing-path": without(GOOD_REQUEST, b":path"),
    "missing-method": without(GOOD_REQUEST, b":method"),
    "duplicated-method": [(b":method", b"POST"), *GOOD_REQUEST],
    "duplicated-path": [(b":path", b"/a.B/C"), *GOOD_REQUEST],
    "duplicated-scheme": [(b":scheme", b"http"), *GOOD_REQUEST],
    "empty-path": [(b":path", b"") if n == b":path" else (n, v) for n, v in GOOD_REQUEST],
}
BAD_RESPONSES: dict[str, Headers] = {
    "missing-status": [(b"content-type", b"application/grpc")],
    "duplicated-status": [(b":status", b"200"), *GOOD_RESPONSE],
    "request-pseudo": [*GOOD_RESPONSE[:1], (b":path", b"/a.B/C"), *GOOD_RESPONSE[1:]],
    "status-after-regular": [(b"content-type", b"application/grpc"), (b":status", b"200")],
    "upper-case-name": [*GOOD_RESPONSE, (b"Grpc-Encoding", b"gzip")],
    "connection": [*GOOD_RESPONSE, (b"connection", b"close")],
    "transfer-encoding": [*GOOD_RESPONSE, (b"transfer-encoding", b"chunked")],
    "te": [*GOOD_RESPONSE, (b"te", b"trailers")],
}
BAD_TRAILERS: dict[str, Headers] = {
    "status-pseudo": [(b":status", b"200"), *GOOD_TRAILERS],
    "path-pseudo": [*GOOD_TRAILERS, (b":path", b"/x")],
    "upper-case-name": [*GOOD_TRAILERS, (b"Grpc-Message", b"x")],
    "connection": [*GOOD_TRAILERS, (b"connection", b"close")],
}


# --- the checks alone --------------------------------------------------------------------------------


def test_well_formed_blocks_pass() -> None:
    assert check_request(GOOD_REQUEST) is None
    assert check_request([*GOOD_REQUEST, (b"x-1", b"a"), (b"123", b"b"), (b"grpc-timeout", b"1S")]) is None
    assert check_request([(b":method", b"CONNECT"), (b":authority", b"h:1")]) is None  # §8.5
    assert check_response(GOOD_RESPONSE) is None
    assert check_response([(b":status", b"100")]) is None
    assert check_response_trailers([*GOOD_TRAILERS, (b"grpc-message", b"trailing space ")]) is None
    assert check_request_trailers([(b"x-checksum", b"1")]) is None


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_malformed_request_is_named(case: str) -> None:
    assert check_request(BAD_REQUESTS[case]) is not None


@pytest.mark.parametrize("case", BAD_RESPONSES)
def test_malformed_response_is_named(case: str) -> None:
    assert check_response(BAD_RESPONSES[case]) is not None


@pytest.mark.parametrize("case", BAD_TRAILERS)
def test_malformed_trailers_are_named(case: str) -> None:
    assert check_response_trailers(BAD_TRAILERS[case]) is not None
    assert check_request_trailers(BAD_TRAILERS[case]) is not None


def test_the_problem_says_what_is_wrong() -> None:
    assert check_request(BAD_REQUESTS["missing-scheme"]) == "missing pseudo-header field :scheme"
    assert check_request(BAD_REQUESTS["duplicated-method"]) == "duplicated pseudo-header field b':method'"
    assert check_request(BAD_REQUESTS["te-not-trailers"]) == "connection-specific header field b'te'"
    assert check_request(BAD_REQUESTS["upper-case-name"]) == "upper-case header field name b'X-Trace'"
    assert check_response(BAD_RESPONSES["missing-status"]) == "missing pseudo-header field :status"
    assert check_response_trailers(BAD_TRAILERS["path-pseudo"]) == "pseudo-header field b':path' in trailers"


# --- server core: the stream is reset, the connection serves the next call ---------------------------


def raw_peer(client_side: bool) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=client_side, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False,
        )
    )  # fmt: skip
    conn.initiate_connection()
    return conn


def resets(events: list[h2.events.Event], sid: int) -> list[int]:
    return [e.error_code for e in events if isinstance(e, h2.events.StreamReset) and e.stream_id == sid]


def serve_one_good_call(raw: h2.connection.H2Connection, server: GrpcServerConnection) -> None:
    sid = raw.get_next_available_stream_id()
    raw.send_headers(sid, GOOD_REQUEST, end_stream=True)
    _, s_ev = pump(raw, server)
    assert one(s_ev, CallStarted).stream_id == sid


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_server_resets_a_malformed_request_alone(case: str) -> None:
    raw, server = raw_peer(True), GrpcServerConnection(AS_TRANSPORTS)
    pump(raw, server)
    sid = raw.get_next_available_stream_id()
    raw.send_headers(sid, BAD_REQUESTS[case], end_stream=True)
    c_ev, s_ev = pump(raw, server)
    assert resets(c_ev, sid) == [ErrorCodes.PROTOCOL_ERROR]
    assert not only(s_ev, CallStarted) and not only(s_ev, CallRejected)  # never served
    assert not any(isinstance(e, h2.events.ResponseReceived) for e in c_ev)
    serve_one_good_call(raw, server)


@pytest.mark.parametrize("case", BAD_TRAILERS)
def test_server_resets_a_request_with_malformed_trailers(case: str) -> None:
    raw, server = raw_peer(True), GrpcServerConnection(AS_TRANSPORTS)
    pump(raw, server)
    sid = raw.get_next_available_stream_id()
    raw.send_headers(sid, GOOD_REQUEST)
    raw.send_data(sid, encode_message(b"x"))
    _, s_ev = pump(raw, server)
    assert one(s_ev, CallStarted).stream_id == sid
    raw.send_headers(sid, BAD_TRAILERS[case], end_stream=True)
    c_ev, s_ev = pump(raw, server)
    assert resets(c_ev, sid) == [ErrorCodes.PROTOCOL_ERROR]
    reset = one(s_ev, StreamReset)  # the handler hears of it as of a reset
    assert (reset.stream_id, reset.error_code, reset.remote) == (sid, ErrorCodes.PROTOCOL_ERROR, False)
    assert server.open_calls == 0
    serve_one_good_call(raw, server)


# --- client core: the call fails, the connection carries the next call -------------------------------


def start(client: GrpcClientConnection, raw: h2.connection.H2Connection) -> int:
    sid = client.start_call("/a.B/C", "svc")
    client.send_message(sid, b"x", end=True)
    pump(client, raw)
    return sid


def answer_one_good_call(client: GrpcClientConnection, raw: h2.connection.H2Connection) -> None:
    sid = start(client, raw)
    raw.send_headers(sid, GOOD_RESPONSE)
    raw.send_headers(sid, GOOD_TRAILERS, end_stream=True)
    c_ev, _ = pump(client, raw)
    assert one(c_ev, TrailersReceived).raw_status == 0


def failed_with_protocol_error(c_ev: list[Event], sid: int) -> None:
    reset = one(c_ev, StreamReset)
    assert (reset.stream_id, reset.error_code, reset.remote) == (sid, ErrorCodes.PROTOCOL_ERROR, False)
    assert not only(c_ev, TrailersReceived)


@pytest.mark.parametrize("case", BAD_RESPONSES)
def test_client_resets_a_malformed_response_alone(case: str) -> None:
    client, raw = GrpcClientConnection(AS_TRANSPORTS), raw_peer(False)
    pump(client, raw)
    sid = start(client, raw)
    raw.send_headers(sid, BAD_RESPONSES[case])
    c_ev, r_ev = pump(client, raw)
    failed_with_protocol_error(c_ev, sid)
    assert resets(r_ev, sid) == [ErrorCodes.PROTOCOL_ERROR]
    assert client.open_calls == 0
    answer_one_good_call(client, raw)


@pytest.mark.parametrize("case", BAD_RESPONSES)
def test_client_rejects_a_malformed_trailers_only_response(case: str) -> None:
    client, raw = GrpcClientConnection(AS_TRANSPORTS), raw_peer(False)
    pump(client, raw)
    sid = start(client, raw)
    raw.send_headers(sid, [*BAD_RESPONSES[case], *GOOD_TRAILERS], end_stream=True)
    c_ev, _ = pump(client, raw)
    failed_with_protocol_error(c_ev, sid)
    answer_one_good_call(client, raw)


@pytest.mark.parametrize("case", BAD_TRAILERS)
def test_client_rejects_malformed_trailers(case: str) -> None:
    client, raw = GrpcClientConnection(AS_TRANSPORTS), raw_peer(False)
    pump(client, raw)
    sid = start(client, raw)
    raw.send_headers(sid, GOOD_RESPONSE)
    raw.send_headers(sid, BAD_TRAILERS[case], end_stream=True)
    c_ev, _ = pump(client, raw)
    failed_with_protocol_error(c_ev, sid)
    assert client.open_calls == 0
    answer_one_good_call(client, raw)
