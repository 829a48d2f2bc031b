"""Translation between grpcio's status objects and :mod:`kitex_grpc.errors`."""

from __future__ import annotations

from typing import Any

import grpc

from kitex_grpc.errors import BizStatusError, KitexError, from_status
from kitex_grpc.status import StatusCode

_TO_GRPC: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def to_grpc_code(code: StatusCode) -> grpc.StatusCode:
    # grpcio cannot send numbers it does not define (Kitex's 20); UNKNOWN is the spec's fallback.
    return _TO_GRPC.get(int(code), grpc.StatusCode.UNKNOWN)


def error_from_rpc_error(exc: grpc.aio.AioRpcError) -> KitexError:
    """The error a client raises for a failed grpc.aio call; biz-status trailers make a BizStatusError."""
    code = StatusCode.from_wire(exc.code().value[0])
    message = exc.details() or ""
    trailers = exc.trailing_metadata()
    if trailers:
        biz = BizStatusError.from_grpc_trailers(trailers, message, code)
        if biz is not None:
            return biz
    return from_status(code, message)


async def error_for_undefined_code(call: Any) -> KitexError:
    """The error for a call whose status code grpcio does not define (Kitex's 20 for an unknown service).

    grpcio before 1.81 raises ``KeyError`` building the call's error, or from ``call.code()``, for such
    a code; later releases report it as UNKNOWN, and so does this, with the status text.
    """
    return from_status(StatusCode.UNKNOWN, await call.details() or "")
