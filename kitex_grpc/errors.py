"""One error tree in the shape of Kitex's ``pkg/kerrors`` (KITEX-WIRE.md §7).

::

    KitexError                          basic errors; str() renders "<basic>[remote]: <detail>"
    ├── InternalError                   ErrInternalException (no such method, no destination, ...)
    ├── ServiceDiscoveryError           ErrServiceDiscovery (no resolver, no instance, resolve failed)
    ├── GetConnectionError              ErrGetConnection (dial failed or timed out; the balancer re-picks)
    ├── LoadBalanceError                ErrLoadbalance
    ├── NoMoreInstanceError             ErrNoMoreInstance
    ├── RPCTimeoutError                 ErrRPCTimeout (local deadline, or the peer's DEADLINE_EXCEEDED)
    ├── CanceledError                   the call was cancelled by the peer
    ├── ACLError                        ErrACL
    ├── CircuitBreakError               ErrCircuitBreak
    │   ├── ServiceCircuitBreakError
    │   └── InstanceCircuitBreakError
    ├── RemoteOrNetworkError            ErrRemoteOrNetwork: any other remote status or I/O failure
    ├── OverLimitError                  ErrOverlimit
    │   ├── ConnOverLimitError
    │   ├── QPSOverLimitError
    │   └── ConcurrencyOverLimitError
    ├── BizError                        ErrBiz: a handler raised an ordinary exception
    ├── RetryError                      ErrRetry
    ├── RouteError                      ErrRoute
    ├── ProtocolError                   a malformed frame, message or header
    ├── StatusError                     a handler-chosen gRPC status (Kitex ``status.Error``)
    └── BizStatusError                  a business status (code, message, extra) returned by a handler

Every class carries the gRPC status it maps to (``grpc_status``) and a Thrift TApplicationException
type (``tapp_type``) as class attributes; an instance may override ``grpc_status`` (a remote error keeps
the code it arrived with). :func:`from_status` and :func:`to_status` are the only translation between
this tree and gRPC statuses; transports call them at their boundary.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from typing import ClassVar

from kitex_grpc import header_keys
from kitex_grpc.status import StatusCode

__all__ = [
    "ACLError",
    "BizError",
    "BizStatusError",
    "CanceledError",
    "CircuitBreakError",
    "ConcurrencyOverLimitError",
    "ConnOverLimitError",
    "GetConnectionError",
    "InstanceCircuitBreakError",
    "InternalError",
    "KitexError",
    "LoadBalanceError",
    "NoMoreInstanceError",
    "OverLimitError",
    "ProtocolError",
    "QPSOverLimitError",
    "RPCTimeoutError",
    "RemoteOrNetworkError",
    "RetryError",
    "RouteError",
    "ServiceCircuitBreakError",
    "ServiceDiscoveryError",
    "StatusCode",
    "StatusError",
    "TApplicationType",
    "from_status",
    "to_status",
]


class TApplicationType(enum.IntEnum):
    """Thrift TApplicationException types; 20 and 21 are Kitex's own (``pkg/remote/trans_errors.go``)."""

    UNKNOWN = 0
    UNKNOWN_METHOD = 1
    INVALID_MESSAGE_TYPE = 2
    WRONG_METHOD_NAME = 3
    BAD_SEQUENCE_ID = 4
    MISSING_RESULT = 5
    INTERNAL_ERROR = 6
    PROTOCOL_ERROR = 7
    INVALID_TRANSFORM = 8
    INVALID_PROTOCOL = 9
    UNSUPPORTED_CLIENT_TYPE = 10
    UNKNOWN_SERVICE = 20
    NO_SERVICE_NAME = 21


class KitexError(Exception):
    """Base of every error the framework raises.

    ``detail`` says what happened; ``remote`` is true when the peer reported the error (Kitex renders
    those with a ``[remote]`` suffix on the basic message).
    """

    basic_message: ClassVar[str] = "kitex error"
    grpc_status: StatusCode = StatusCode.INTERNAL
    tapp_type: ClassVar[TApplicationType] = TApplicationType.INTERNAL_ERROR

    def __init__(
        self, detail: str = "", *, grpc_status: StatusCode | None = None, remote: bool = False
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.remote = remote
        if grpc_status is not None:
            self.grpc_status = grpc_status

    def with_cause(self, cause: BaseException) -> KitexError:
        """Attach ``cause`` (shown after the detail) and return ``self``."""
        self.__cause__ = cause
        return self

    def __str__(self) -> str:
        head = self.basic_message + ("[remote]" if self.remote else "")
        tail = self.detail
        if self.__cause__ is not None:
            tail = f"{tail}: {self.__cause__}" if tail else str(self.__cause__)
        return f"{head}: {tail}" if tail else head

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, grpc_status={self.grpc_status.name})"


class InternalError(KitexError):
    basic_message = "internal exception"


class ServiceDiscoveryError(KitexError):
    basic_message = "service discovery error"
    grpc_status = StatusCode.UNAVAILABLE


class GetConnectionError(KitexError):
    basic_message = "get connection error"
    grpc_status = StatusCode.UNAVAILABLE


class LoadBalanceError(KitexError):
    basic_message = "loadbalance error"
    grpc_status = StatusCode.UNAVAILABLE


class NoMoreInstanceError(KitexError):
    basic_message = "no more instances to retry"
    grpc_status = StatusCode.UNAVAILABLE


class RPCTimeoutError(KitexError):
    basic_message = "rpc timeout"
    grpc_status = StatusCode.DEADLINE_EXCEEDED


class CanceledError(KitexError):
    basic_message = "canceled"
    grpc_status = StatusCode.CANCELLED


class ACLError(KitexError):
    basic_message = "request forbidden"
    grpc_status = StatusCode.PERMISSION_DENIED


class CircuitBreakError(KitexError):
    basic_message = "forbidden by circuitbreaker"
    grpc_status = StatusCode.UNAVAILABLE


class ServiceCircuitBreakError(CircuitBreakError):
    basic_message = "service circuitbreak"


class InstanceCircuitBreakError(CircuitBreakError):
    basic_message = "instance circuitbreak"


class RemoteOrNetworkError(KitexError):
    basic_message = "remote or network error"
    grpc_status = StatusCode.UNAVAILABLE


class OverLimitError(KitexError):
    basic_message = "request over limit"
    grpc_status = StatusCode.RESOURCE_EXHAUSTED


class ConnOverLimitError(OverLimitError):
    basic_message = "connection over limit"


class QPSOverLimitError(OverLimitError):
    basic_message = "qps over limit"


class ConcurrencyOverLimitError(OverLimitError):
    basic_message = "concurrency over limit"


class BizError(KitexError):
    basic_message = "biz error"


class RetryError(KitexError):
    basic_message = "retry error"


class RouteError(KitexError):
    basic_message = "rpc route failed"


class ProtocolError(KitexError):
    basic_message = "protocol error"
    tapp_type = TApplicationType.PROTOCOL_ERROR


class StatusError(KitexError):
    """A handler raises this to end the call with exactly this gRPC status and message."""

    basic_message = "status error"

    def __init__(self, code: StatusCode | int, message: str = "") -> None:
        super().__init__(message, grpc_status=StatusCode.from_wire(int(code)))

    def __str__(self) -> str:
        return f"{self.grpc_status.name}: {self.detail}"


# Trailer / string-info keys for business status (KITEX-WIRE.md §1.4 and §3), kept importable from here.
BIZ_STATUS_KEY = header_keys.BIZ_STATUS_KEY
BIZ_MESSAGE_KEY = header_keys.BIZ_MESSAGE_KEY
BIZ_EXTRA_KEY = header_keys.BIZ_EXTRA_KEY


class BizStatusError(KitexError):
    """A business status returned by a handler: ``code``, ``message`` and string ``extra``.

    It is a successful transport exchange carrying a business failure. Over gRPC it travels as
    grpc-status 13 (or ``grpc_status``), grpc-message, and the ``biz-status`` / ``biz-extra`` trailers;
    over TTHeader as the ``biz-status`` / ``biz-message`` / ``biz-extra`` string keys.
    """

    basic_message = "biz error"

    def __init__(
        self,
        code: int,
        message: str,
        extra: Mapping[str, str] | None = None,
        *,
        grpc_status: StatusCode = StatusCode.INTERNAL,
    ) -> None:
        super().__init__(message, grpc_status=grpc_status)
        self.code = int(code)
        self.message = message
        self.extra: dict[str, str] = dict(extra or {})

    def __str__(self) -> str:
        return f"biz error: code={self.code}, msg={self.message}"

    def __repr__(self) -> str:
        return f"BizStatusError(code={self.code}, message={self.message!r}, extra={self.extra!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BizStatusError):
            return NotImplemented
        return (self.code, self.message, self.extra) == (other.code, other.message, other.extra)

    __hash__ = Exception.__hash__

    def encode_extra(self, *, ascii_only: bool = False) -> str:
        """``biz-extra`` as Kitex writes it: a compact JSON object of strings.

        Kitex writes raw UTF-8 (``pkg/utils`` ``Map2JSONStr``), which a TTHeader string key
        carries. With ``ascii_only`` every character outside printable ASCII is a ``\\uXXXX`` escape
        instead, which any JSON decoder (Kitex's included) reads back to the same map: an HTTP/2
        header value may only hold printable ASCII (gRPC's PROTOCOL-HTTP2.md, "ASCII-Value").
        """
        text = json.dumps(self.extra, separators=(",", ":"), ensure_ascii=ascii_only, sort_keys=True)
        # ensure_ascii keeps DEL (0x7f), which is not printable; it can only sit inside a JSON string.
        return text.replace("\x7f", "\\u007f") if ascii_only else text

    def grpc_trailers(self) -> list[tuple[str, str]]:
        """The trailers Go Kitex sends with a biz error over gRPC; the message rides in grpc-message.

        ``biz-extra`` is ASCII-escaped JSON (see :meth:`encode_extra`), so extra values of any text
        fit in a header.
        """
        trailers = [(BIZ_STATUS_KEY, str(self.code))]
        if self.extra:
            trailers.append((BIZ_EXTRA_KEY, self.encode_extra(ascii_only=True)))
        return trailers

    @classmethod
    def from_grpc_trailers(
        cls, trailers: Iterable[tuple[str, str | bytes]], message: str, grpc_status: StatusCode
    ) -> BizStatusError | None:
        """Rebuild the error from gRPC trailers, or ``None`` when there is no non-zero biz-status."""
        status: str | None = None
        extra_raw: str | None = None
        for key, value in trailers:
            if key == BIZ_STATUS_KEY:
                status = value.decode() if isinstance(value, bytes) else value
            elif key == BIZ_EXTRA_KEY:
                extra_raw = value.decode() if isinstance(value, bytes) else value
        return cls.from_fields(status, message, extra_raw, grpc_status=grpc_status)

    @classmethod
    def from_fields(
        cls,
        status: str | None,
        message: str,
        extra_raw: str | None,
        *,
        grpc_status: StatusCode = StatusCode.INTERNAL,
    ) -> BizStatusError | None:
        """Kitex treats a reply as a biz error only when biz-status parses as a non-zero int."""
        if status is None:
            return None
        try:
            code = int(status)
        except ValueError:
            return None
        if code == 0:
            return None
        extra: dict[str, str] = {}
        if extra_raw:
            try:
                decoded = json.loads(extra_raw)
            except ValueError as exc:
                raise ProtocolError(f"malformed biz-extra {extra_raw!r}").with_cause(exc) from exc
            if not isinstance(decoded, dict):
                raise ProtocolError(f"biz-extra is not a JSON object: {extra_raw!r}")
            extra = {str(k): str(v) for k, v in decoded.items()}
        return cls(code, message, extra, grpc_status=grpc_status)


# A remote status is rebuilt as the category a local failure of the same kind would raise.
_FROM_STATUS: dict[StatusCode, type[KitexError]] = {
    StatusCode.DEADLINE_EXCEEDED: RPCTimeoutError,
    StatusCode.CANCELLED: CanceledError,
    StatusCode.RESOURCE_EXHAUSTED: OverLimitError,
    StatusCode.PERMISSION_DENIED: ACLError,
}


def from_status(code: StatusCode | int, message: str) -> KitexError:
    """The error a client raises for a non-OK gRPC status received from the peer."""
    status = code if isinstance(code, StatusCode) else StatusCode.from_wire(code)
    if int(code) != int(status):  # keep Kitex's non-standard numbers visible in the detail
        message = f"[grpc-status {int(code)}] {message}"
    cls = _FROM_STATUS.get(status, RemoteOrNetworkError)
    return cls(message, grpc_status=status, remote=True)


def to_status(exc: BaseException) -> tuple[StatusCode, str]:
    """The gRPC status and message a server sends for ``exc`` raised by its chain.

    BizStatusError is not handled here: it also needs trailers (see :class:`BizStatusError`).
    """
    if isinstance(exc, StatusError):
        return exc.grpc_status, exc.detail
    if isinstance(exc, BizError):
        return StatusCode.INTERNAL, f"{exc.detail} [biz error]"
    if isinstance(exc, KitexError):
        return exc.grpc_status, str(exc)
    # Kitex renders a plain handler error as "<err> [biz error]" with status 13 (nphttp2/codes.go).
    text = str(exc) or type(exc).__name__
    return StatusCode.INTERNAL, f"{text} [biz error]"
