from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kitex_grpc.protocol import grpc_headers as gh
from kitex_grpc.status import StatusCode

# --- grpc-timeout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "wire"),
    [
        (0, "0n"),
        (-1, "0n"),
        (1e-9, "1n"),
        (0.05, "50000000n"),
        (0.1, "100000u"),  # 1e8 ns does not fit 8 digits: microseconds
        (1.0, "1000000u"),
        (1.5, "1500000u"),
        (100.0, "100000m"),
        (100_000.0, "100000S"),
        (3600 * 100_000.0, "6000000M"),
        (1.0000000001, "1000001u"),  # rounds up, never shortens a deadline
    ],
)
def test_encode_timeout(seconds: float, wire: str) -> None:
    assert gh.encode_timeout(seconds) == wire


def test_encode_timeout_picks_hours_for_huge_values() -> None:
    assert gh.encode_timeout(3600 * 2_000_000) == "2000000H"  # 120,000,000 minutes do not fit
    assert gh.encode_timeout(1e30) == "99999999H"


@pytest.mark.parametrize(
    ("wire", "seconds"),
    [
        ("1H", 3600.0),
        ("2M", 120.0),
        ("3S", 3.0),
        ("4m", 0.004),
        ("5u", 5e-6),
        ("6n", 6e-9),
        ("99999999S", 99999999.0),
        ("0n", 0.0),
    ],
)
def test_decode_timeout(wire: str, seconds: float) -> None:
    assert gh.decode_timeout(wire) == pytest.approx(seconds)
    assert gh.decode_timeout(wire.encode()) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "wire", ["", "S", "1", "1s", "1x", "123456789S", "-1S", "+1S", "1.5S", " 1S", "\u0661S"]
)
def test_decode_timeout_rejects(wire: str) -> None:
    with pytest.raises(gh.GrpcHeaderError) as info:
        gh.decode_timeout(wire)
    assert info.value.grpc_status is StatusCode.INTERNAL


@given(st.floats(min_value=1e-9, max_value=1e7, allow_nan=False))
def test_timeout_round_trip_never_shortens(seconds: float) -> None:
    wire = gh.encode_timeout(seconds)
    assert len(wire) <= 9
    back = gh.decode_timeout(wire)
    assert back >= seconds * (1 - 1e-12)
    # The finest unit that fits keeps the error below one unit step of 8 significant digits.
    assert back <= seconds * 1.00001 + 1e-9


# --- grpc-message -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("", ""),
        ("plain text ok!", "plain text ok!"),
        ("100%", "100%25"),
        ("line\nbreak", "line%0Abreak"),
        ("tab\t", "tab%09"),
        ("测试", "%E6%B5%8B%E8%AF%95"),
        ("~ and \x7f", "~ and %7F"),
    ],
)
def test_grpc_message_encoding(text: str, wire: str) -> None:
    assert gh.encode_grpc_message(text) == wire
    assert gh.decode_grpc_message(wire) == text
    assert gh.decode_grpc_message(wire.encode()) == text


def test_grpc_message_decoding_keeps_malformed_escapes() -> None:
    assert gh.decode_grpc_message("50%zz off %") == "50%zz off %"
    assert gh.decode_grpc_message("%E6%B5") == "\ufffd"  # invalid UTF-8 is replaced, not raised


@given(st.text())
def test_grpc_message_round_trip(text: str) -> None:
    wire = gh.encode_grpc_message(text)
    assert all(0x20 <= ord(c) <= 0x7E for c in wire)
    expected = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot travel
    assert gh.decode_grpc_message(wire) == expected


# --- grpc-status, binary values -------------------------------------------------------------------


def test_parse_grpc_status() -> None:
    assert gh.parse_grpc_status(b"0") == 0
    assert gh.parse_grpc_status("20") == 20
    for bad in (b"", b"-1", b"1.0", b"abc", b"12345678901"):
        with pytest.raises(gh.GrpcHeaderError):
            gh.parse_grpc_status(bad)


@given(st.binary(max_size=64))
def test_binary_values_round_trip_padded_or_not(raw: bytes) -> None:
    wire = gh.encode_binary_value(raw)
    assert not wire.endswith(b"=")
    assert gh.decode_binary_value(wire) == raw
    padded = wire + b"=" * (-len(wire) % 4)
    assert gh.decode_binary_value(padded) == raw
    assert gh.decode_binary_value(padded.decode()) == raw


def test_binary_value_rejects_garbage() -> None:
    with pytest.raises(gh.GrpcHeaderError):
        gh.decode_binary_value(b"!!!!")
    with pytest.raises(gh.GrpcHeaderError):
        gh.decode_binary_value(b"a")  # one base64 char can never be valid


# --- metadata, content-type ----------------------------------------------------------------------


def test_reserved_headers() -> None:
    for name in (
        ":path",
        "content-type",
        "te",
        "grpc-timeout",
        "grpc-status",
        "grpc-message",
        "user-agent",
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-status-details-bin",
        "connection",
    ):
        assert gh.is_reserved_header(name)
    for name in ("x-user", "rpc-transit-a", "authorization", "grpc-previous-rpc-attempts"):
        assert not gh.is_reserved_header(name)


def test_encode_metadata_filters_validates_and_lowercases() -> None:
    headers = gh.encode_metadata(
        [
            ("X-Trace", "abc"),
            ("grpc-timeout", "1S"),
            (":path", "/x"),
            ("blob-bin", b"\x00\xff"),
            ("s-bin", "hi"),
        ]
    )
    assert headers == [(b"x-trace", b"abc"), (b"blob-bin", b"AP8"), (b"s-bin", b"aGk")]
    with pytest.raises(gh.GrpcHeaderError):
        gh.encode_metadata([("bad key", "v")])
    with pytest.raises(gh.GrpcHeaderError):
        gh.encode_metadata([("k", "line\nbreak")])
    with pytest.raises(gh.GrpcHeaderError):
        gh.encode_metadata([("k", "café")])


def test_decode_metadata() -> None:
    md = gh.decode_metadata(
        [
            (b":status", b"200"),
            (b"content-type", b"application/grpc"),
            (b"x-a", b"1"),
            (b"x-a", b"2"),
            (b"d-bin", b"AP8="),
            (b"grpc-status", b"0"),
        ]
    )
    assert md == (("x-a", "1"), ("x-a", "2"), ("d-bin", b"\x00\xff"))


@pytest.mark.parametrize(
    ("value", "subtype"),
    [
        ("application/grpc", ""),
        (b"application/grpc+proto", "proto"),
        ("application/grpc+thrift", "thrift"),
        ("application/grpc;json", "json"),
        ("Application/GRPC+Proto", "proto"),
        ("application/grpcx", None),
        ("application/json", None),
        ("text/plain", None),
        (None, None),
    ],
)
def test_parse_content_type(value: str | bytes | None, subtype: str | None) -> None:
    assert gh.parse_content_type(value) == subtype


# --- header lists ---------------------------------------------------------------------------------


def test_request_headers_in_kitex_order() -> None:
    headers = gh.build_request_headers(
        "/echo.Echo/Unary",
        "echo",
        timeout=1.0,
        encoding="gzip",
        accept_encoding="gzip",
        user_agent="kitex/0.16.3",
        content_subtype="thrift",
        metadata=[("rpc-transit-a", "1"), ("te", "x")],
    )
    assert headers == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/echo.Echo/Unary"),
        (b":authority", b"echo"),
        (b"content-type", b"application/grpc+thrift"),
        (b"user-agent", b"kitex/0.16.3"),
        (b"te", b"trailers"),
        (b"grpc-timeout", b"1000000u"),
        (b"grpc-encoding", b"gzip"),
        (b"grpc-accept-encoding", b"gzip"),
        (b"rpc-transit-a", b"1"),
    ]


def test_minimal_request_headers() -> None:
    headers = gh.build_request_headers("/a.B/C", "svc", scheme="https")
    assert [name for name, _ in headers] == [
        b":method",
        b":scheme",
        b":path",
        b":authority",
        b"content-type",
        b"user-agent",
        b"te",
    ]
    assert headers[1] == (b":scheme", b"https")
    assert headers[4] == (b"content-type", b"application/grpc")
    assert headers[5] == (b"user-agent", gh.DEFAULT_USER_AGENT.encode())


def test_response_headers_and_trailers() -> None:
    assert gh.build_response_headers() == [(b":status", b"200"), (b"content-type", b"application/grpc")]
    assert gh.build_response_headers(content_subtype="proto", encoding="gzip", metadata=[("x", "y")]) == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc+proto"),
        (b"grpc-encoding", b"gzip"),
        (b"x", b"y"),
    ]
    assert gh.build_trailers(StatusCode.OK) == [(b"grpc-status", b"0")]
    assert gh.build_trailers(13, "boom 100%", metadata=[("biz-status", "1001")], details=b"\x01") == [
        (b"grpc-status", b"13"),
        (b"grpc-message", b"boom 100%25"),
        (b"grpc-status-details-bin", b"AQ"),
        (b"biz-status", b"1001"),
    ]


def test_trailers_only() -> None:
    assert gh.build_trailers(StatusCode.UNIMPLEMENTED, "nope", trailers_only=True) == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"12"),
        (b"grpc-message", b"nope"),
    ]
    assert gh.build_trailers(3, trailers_only=True, http_status=415)[0] == (b":status", b"415")


def test_header_list_size() -> None:
    assert gh.header_list_size([(b"ab", b"cde")]) == 37


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/echo.v1.Echo/Unary", ("Echo", "Unary")),  # the package is dropped, as Kitex does
        ("/Echo/Unary", ("Echo", "Unary")),
        ("/a.b.c.Svc/M", ("Svc", "M")),
        ("/Unary", ("", "Unary")),
        ("Unary", ("", "Unary")),
        ("/Echo/", ("Echo", "")),
    ],
)
def test_split_method_path(path: str, expected: tuple[str, str]) -> None:
    assert gh.split_method_path(path) == expected
