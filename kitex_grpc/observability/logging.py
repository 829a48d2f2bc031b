"""Logging: a small logger interface, a stdlib ``logging`` default, and an opt-in access log.

kitex-grpc writes no log line per call unless asked to. :func:`~kitex_grpc.client.with_access_log` and
:func:`~kitex_grpc.server.with_access_log` turn on an access log: one record per finished call, at
INFO (WARNING when the call failed), with structured fields::

    side     "client" or "server"
    service  the full service name, e.g. "echo.v1.Echo"
    method   the method name
    peer     the other side's host:port (client: the instance called; server: the caller)
    caller   the calling service's name (client: its own; server: what the caller sent, TTHeader
             FromService or gRPC source-service), "" when unknown; caller_method likewise
    status   the gRPC status name ("OK", "UNAVAILABLE", ...); code holds its number
    latency  seconds, float (latency_ms in the message)
    attempt  1 for a first try, more for retries and backup requests

With the default :class:`StdlibLogger` the fields become attributes of the ``logging.LogRecord``
(``record.service``, ``record.status``, ...), so a JSON formatter can emit them as they are.

The access log is a :class:`~kitex_grpc.observability.tracer.Tracer` rather than a chain middleware:
it runs outside every middleware (so it sees retries and circuit-breaker rejections too) and, for
streams, logs when the stream ends, with the stream's real latency.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from kitex_grpc.observability.stats import status_of

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import RPCInfo

__all__ = ["AccessLogTracer", "Logger", "StdlibLogger", "call_fields", "default_logger"]

ACCESS_LOGGER_NAME = "kitex_grpc.access"


@runtime_checkable
class Logger(Protocol):
    """Where kitex-grpc sends structured log records."""

    def log(self, level: int, message: str, fields: Mapping[str, object]) -> None: ...


class StdlibLogger:
    """A :class:`Logger` over a stdlib ``logging.Logger``; fields become LogRecord attributes."""

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger | str = ACCESS_LOGGER_NAME) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger

    def log(self, level: int, message: str, fields: Mapping[str, object]) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, message, extra=dict(fields), stacklevel=2)

    def __repr__(self) -> str:
        return f"StdlibLogger({self.logger.name!r})"


def default_logger() -> StdlibLogger:
    """The access log's default destination: the ``kitex_grpc.access`` stdlib logger."""
    return StdlibLogger(ACCESS_LOGGER_NAME)


def call_fields(ri: RPCInfo, side: str) -> dict[str, object]:
    """The structured fields of a finished call (see the module docstring)."""
    stats = ri.stats
    status = status_of(stats.error, ri)
    peer = ri.callee.address if side == "client" else ri.caller.address
    return {
        "side": side,
        "service": ri.service.full_name,
        "method": ri.method.name,
        "peer": peer,
        "caller": ri.caller.service_name,
        "caller_method": ri.caller.method,
        "status": status.name,
        "code": int(status),
        "latency": stats.duration or 0.0,
        "attempt": ri.attempt,
    }


class AccessLogTracer:
    """Logs one line per finished call; install it with ``with_access_log``."""

    __slots__ = ("level", "logger", "side")

    def __init__(
        self, logger: Logger | logging.Logger | None = None, *, side: str, level: int = logging.INFO
    ) -> None:
        if side not in ("client", "server"):
            raise ValueError(f"with_access_log: side must be 'client' or 'server', got {side!r}")
        if logger is None:
            self.logger: Logger = default_logger()
        elif isinstance(logger, logging.Logger):
            self.logger = StdlibLogger(logger)
        elif isinstance(logger, Logger):
            self.logger = logger
        else:
            raise TypeError(f"with_access_log: expected a logging.Logger or a Logger, got {logger!r}")
        self.side = side
        self.level = level

    def start(self, ri: RPCInfo) -> None:
        return None

    def finish(self, ri: RPCInfo) -> None:
        fields = call_fields(ri, self.side)
        level = self.level if fields["code"] == 0 else max(self.level, logging.WARNING)
        latency = fields["latency"]
        assert isinstance(latency, float)
        message = (
            f"{self.side} {fields['service']}/{fields['method']} peer={fields['peer'] or '-'}"
            f" caller={fields['caller'] or '-'} status={fields['status']} latency_ms={latency * 1000:.3f}"
        )
        self.logger.log(level, message, fields)

    def __repr__(self) -> str:
        return f"AccessLogTracer({self.logger!r}, side={self.side!r})"
