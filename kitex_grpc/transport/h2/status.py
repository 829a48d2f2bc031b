"""How h2 outcomes become :mod:`kitex_grpc.errors` on the client (the grpcio adapter's twin)."""

from __future__ import annotations

from h2.errors import ErrorCodes

from kitex_grpc.errors import BizStatusError, KitexError, RemoteOrNetworkError, from_status
from kitex_grpc.protocol.h2_events import TrailersReceived
from kitex_grpc.status import StatusCode

# gRPC PROTOCOL-HTTP2.md "Errors": RST_STREAM codes as a client surfaces them.
_RST_TO_STATUS: dict[int, StatusCode] = {
    ErrorCodes.REFUSED_STREAM: StatusCode.UNAVAILABLE,
    ErrorCodes.CANCEL: StatusCode.CANCELLED,
    ErrorCodes.ENHANCE_YOUR_CALM: StatusCode.RESOURCE_EXHAUSTED,
    ErrorCodes.INADEQUATE_SECURITY: StatusCode.PERMISSION_DENIED,
}


def error_from_trailers(ev: TrailersReceived) -> KitexError:
    """A non-OK status: biz-status trailers make a BizStatusError, anything else :func:`from_status`."""
    if ev.metadata:
        biz = BizStatusError.from_grpc_trailers(ev.metadata, ev.message, ev.status)
        if biz is not None:
            return biz
    return from_status(ev.raw_status, ev.message)


def error_from_reset(error_code: int) -> KitexError:
    """The peer reset the stream (RST_STREAM); the call ends with the mapped status."""
    status = _RST_TO_STATUS.get(error_code, StatusCode.INTERNAL)
    try:
        name = ErrorCodes(error_code).name
    except ValueError:
        name = str(error_code)
    return from_status(status, f"stream terminated by RST_STREAM with error code: {name}")


def connection_error(detail: str) -> KitexError:
    """A connection failed (lost, GOAWAY with an error, keepalive timeout): UNAVAILABLE."""
    return RemoteOrNetworkError(detail, grpc_status=StatusCode.UNAVAILABLE, remote=True)
