"""The error tree, its rendering, and the mapping to and from gRPC statuses."""

from __future__ import annotations

import pytest

from kitex_grpc import errors
from kitex_grpc.errors import BizStatusError, StatusCode


def test_rendering_follows_kitex_detailed_error() -> None:
    assert str(errors.RPCTimeoutError()) == "rpc timeout"
    assert str(errors.RPCTimeoutError("timeout=1s")) == "rpc timeout: timeout=1s"
    remote = errors.RemoteOrNetworkError("boom", remote=True)
    assert str(remote) == "remote or network error[remote]: boom"
    caused = errors.GetConnectionError("dial 1.2.3.4:5").with_cause(OSError("refused"))
    assert str(caused) == "get connection error: dial 1.2.3.4:5: refused"
    assert str(BizStatusError(7, "no")) == "biz error: code=7, msg=no"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (StatusCode.DEADLINE_EXCEEDED, errors.RPCTimeoutError),
        (StatusCode.CANCELLED, errors.CanceledError),
        (StatusCode.RESOURCE_EXHAUSTED, errors.OverLimitError),
        (StatusCode.PERMISSION_DENIED, errors.ACLError),
        (StatusCode.UNAVAILABLE, errors.RemoteOrNetworkError),
        (StatusCode.NOT_FOUND, errors.RemoteOrNetworkError),
        (StatusCode.INTERNAL, errors.RemoteOrNetworkError),
    ],
)
def test_from_status_builds_the_category(code: StatusCode, cls: type[errors.KitexError]) -> None:
    err = errors.from_status(code, "detail")
    assert type(err) is cls and err.grpc_status is code and err.remote and err.detail == "detail"


def test_kitex_nonstandard_status_is_kept_visible() -> None:
    err = errors.from_status(20, "unknown service Foo")
    assert err.grpc_status is StatusCode.KITEX_UNKNOWN_SERVICE
    assert errors.from_status(99, "x").grpc_status is StatusCode.UNKNOWN
    assert "[grpc-status 99] x" in str(errors.from_status(99, "x"))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (errors.ACLError("denied"), (StatusCode.PERMISSION_DENIED, "request forbidden: denied")),
        (errors.QPSOverLimitError(), (StatusCode.RESOURCE_EXHAUSTED, "qps over limit")),
        (errors.InternalError("x"), (StatusCode.INTERNAL, "internal exception: x")),
        (errors.BizError("bad"), (StatusCode.INTERNAL, "bad [biz error]")),
        (errors.StatusError(StatusCode.NOT_FOUND, "gone"), (StatusCode.NOT_FOUND, "gone")),
        (ValueError("raw"), (StatusCode.INTERNAL, "raw [biz error]")),
        (ValueError(), (StatusCode.INTERNAL, "ValueError [biz error]")),
    ],
)
def test_to_status(exc: BaseException, expected: tuple[StatusCode, str]) -> None:
    assert errors.to_status(exc) == expected


def test_biz_status_trailers_round_trip() -> None:
    err = BizStatusError(1001, "credit", {"b": "2", "a": "1"})
    trailers = err.grpc_trailers()
    assert trailers == [("biz-status", "1001"), ("biz-extra", '{"a":"1","b":"2"}')]
    back = BizStatusError.from_grpc_trailers(trailers, "credit", StatusCode.INTERNAL)
    assert back == err
    assert BizStatusError(5, "x").grpc_trailers() == [("biz-status", "5")]


@pytest.mark.parametrize("status", [None, "0", "abc"])
def test_no_biz_error_without_nonzero_status(status: str | None) -> None:
    assert BizStatusError.from_fields(status, "m", None) is None


def test_malformed_biz_extra_is_a_protocol_error() -> None:
    with pytest.raises(errors.ProtocolError, match="malformed biz-extra"):
        BizStatusError.from_fields("3", "m", "{not json")
    with pytest.raises(errors.ProtocolError, match="not a JSON object"):
        BizStatusError.from_fields("3", "m", "[1]")


def test_every_category_is_a_kitex_error_with_wire_codes() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, errors.KitexError), name
            assert isinstance(obj.grpc_status, StatusCode) and isinstance(
                obj.tapp_type, errors.TApplicationType
            )
