"""TApplicationException on both sides of the TTHeader/Framed transports (KITEX-WIRE.md §2).

The client raises :class:`ApplicationError` for an EXCEPTION message (Kitex wraps it as
``ErrRemoteOrNetwork``: "remote or network error[remote]: <message>", ``client/middlewares.go``) and
for reply checks that fail (wrong method name, bad seq id, invalid message type). The server turns
what its chain raised into the ``(message, type)`` of its EXCEPTION reply with
:func:`exception_fields`.
"""

from __future__ import annotations

from kitex_grpc.errors import BizError, KitexError, RemoteOrNetworkError, RPCTimeoutError, TApplicationType

__all__ = ["ApplicationError", "exception_fields"]


class ApplicationError(RemoteOrNetworkError):
    """A TApplicationException (Thrift) or ErrorProto (Kitex Protobuf); ``type_id`` is its type."""

    def __init__(self, message: str, type_id: int, *, remote: bool = True) -> None:
        super().__init__(message, remote=remote)
        self.type_id = type_id

    @property
    def type(self) -> TApplicationType | int:
        try:
            return TApplicationType(self.type_id)
        except ValueError:
            return self.type_id


def exception_fields(exc: BaseException) -> tuple[str, int]:
    """The EXCEPTION reply for an error raised by the server chain.

    A handler's plain error (BizError after the handler_error middleware) is type 6 with the message
    ``"biz error: <err>"``, as Kitex sends it (``server/server.go invokeHandleEndpoint``,
    ``pkg/remote/trans_errors.go``); other framework errors keep their type and text.
    """
    if isinstance(exc, BizError):
        return f"biz error: {exc.detail}", int(TApplicationType.INTERNAL_ERROR)
    if isinstance(exc, RPCTimeoutError):
        # The handler's deadline (from int key 12) expired: a Go handler returns ctx.Err() here.
        return "biz error: context deadline exceeded", int(TApplicationType.INTERNAL_ERROR)
    if isinstance(exc, KitexError):
        return str(exc), int(exc.tapp_type)
    return f"biz error: {exc or type(exc).__name__}", int(TApplicationType.INTERNAL_ERROR)
