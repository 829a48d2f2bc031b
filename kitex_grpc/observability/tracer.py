"""The tracer hook: ``start(ri)`` before the chain, ``finish(ri)`` after it (Kitex ``pkg/stats/tracer.go``).

A client calls ``start`` before its middleware chain runs and ``finish`` once the call is over: after
the reply (unary), or when a stream ends (``EOFError`` after the last message, an error, or
``cancel()``). A server does the same around its chain and handler. At ``finish`` the call's
:class:`~kitex_grpc.rpcinfo.RPCStats` is complete: ``ri.stats.error``, ``ri.stats.duration`` and, for
streams, ``send_messages`` / ``recv_messages``.

With no tracer configured, clients and servers keep ``None`` and skip the hook with one test per
call: tracing costs nothing unless it is used.

Several tracers are combined by :func:`compose` into a :class:`CompositeTracer`: ``start`` runs in
option order and ``finish`` in reverse order, as Kitex's ``TraceController`` does. A tracer that
raises is logged and skipped; it never fails the call.

Per-message stream events reach a tracer through stream send/recv middlewares (see
:func:`message_event_middlewares`), so a stream that nobody observes pays nothing per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kitex_grpc.errors import RPCTimeoutError

if TYPE_CHECKING:
    from kitex_grpc.endpoint import Endpoint
    from kitex_grpc.rpcinfo import RPCInfo
    from kitex_grpc.streaming import RecvEndpoint, RecvMiddleware, SendEndpoint, SendMiddleware

__all__ = [
    "NOOP_TRACER",
    "CompositeTracer",
    "MessageObserver",
    "NoopTracer",
    "Tracer",
    "compose",
    "message_event_middlewares",
]

logger = logging.getLogger("kitex_grpc.observability")


@runtime_checkable
class Tracer(Protocol):
    """Observes calls: ``start`` when one begins, ``finish`` when it is over.

    Both run on the call's own task, so a server-side tracer may make something current for the
    handler in ``start`` (a span, say) and undo it in ``finish``. A client stream's ``finish`` runs
    where the stream ends, which may be another task.
    """

    def start(self, ri: RPCInfo) -> None: ...

    def finish(self, ri: RPCInfo) -> None: ...


class MessageObserver(Protocol):
    """Optional: a tracer that also wants one event per stream message."""

    def on_message(self, ri: RPCInfo, sent: bool, message: Any) -> None: ...


class NoopTracer:
    """The tracer that does nothing (the null object for code that wants one unconditionally)."""

    __slots__ = ()

    def start(self, ri: RPCInfo) -> None:
        return None

    def finish(self, ri: RPCInfo) -> None:
        return None

    def __repr__(self) -> str:
        return "NOOP_TRACER"


NOOP_TRACER = NoopTracer()


class CompositeTracer:
    """Runs several tracers: ``start`` in order, ``finish`` in reverse; a failing tracer is logged."""

    __slots__ = ("_reversed", "tracers")

    def __init__(self, tracers: Sequence[Tracer]) -> None:
        self.tracers: tuple[Tracer, ...] = tuple(tracers)
        self._reversed = tuple(reversed(self.tracers))

    def start(self, ri: RPCInfo) -> None:
        for tracer in self.tracers:
            try:
                tracer.start(ri)
            except Exception:
                logger.exception("tracer %r failed in start", tracer)

    def finish(self, ri: RPCInfo) -> None:
        for tracer in self._reversed:
            try:
                tracer.finish(ri)
            except Exception:
                logger.exception("tracer %r failed in finish", tracer)

    def __repr__(self) -> str:
        return f"CompositeTracer({list(self.tracers)!r})"


def compose(tracers: Sequence[Tracer]) -> CompositeTracer | None:
    """The tracer a client or server uses: ``None`` when there is none (the hook is then skipped)."""
    real = [t for t in tracers if not isinstance(t, NoopTracer)]
    if not real:
        return None
    for tracer in real:
        if not isinstance(tracer, Tracer):
            raise TypeError(f"with_tracer: {tracer!r} has no start(ri)/finish(ri)")
    return CompositeTracer(real)


def message_event_middlewares(
    observer: MessageObserver,
) -> tuple[SendMiddleware, RecvMiddleware]:
    """Stream send/recv middlewares that report each message to ``observer.on_message``.

    The event is reported after the transport accepted (send) or delivered (recv) the message.
    """

    def send_middleware(next_send: SendEndpoint) -> SendEndpoint:
        async def send(ri: RPCInfo, message: Any) -> None:
            await next_send(ri, message)
            _safe(observer.on_message, ri, True, message)

        return send

    def recv_middleware(next_recv: RecvEndpoint) -> RecvEndpoint:
        async def recv(ri: RPCInfo) -> Any:
            message = await next_recv(ri)
            _safe(observer.on_message, ri, False, message)
            return message

        return recv

    return send_middleware, recv_middleware


def _safe(fn: Callable[[RPCInfo, bool, Any], None], ri: RPCInfo, sent: bool, message: Any) -> None:
    try:
        fn(ri, sent, message)
    except Exception:
        logger.exception("message observer %r failed", fn)


def run_traced(endpoint: Endpoint, ri: RPCInfo, request: Any, tracer: Tracer | None) -> Awaitable[Any]:
    """Run ``endpoint`` for one call: the tracer starts before it and finishes after it, and the
    call's stats end with its outcome. Client unary calls and served calls go through here.

    Without a tracer this is ``endpoint(ri, request)`` itself, one coroutine level fewer per call,
    and the stats' end is not recorded: nobody would read it. Kitex likewise disables stats without
    a tracer (its client and server options set ``stats.LevelDisabled`` unless ``HasTracer()``).
    """
    if tracer is None:
        return endpoint(ri, request)
    return _traced(endpoint, ri, request, tracer)


async def _traced(endpoint: Endpoint, ri: RPCInfo, request: Any, tracer: Tracer) -> Any:
    tracer.start(ri)
    try:
        reply = await endpoint(ri, request)
    except BaseException as exc:
        ri.stats.finish(_outcome(ri, exc))
        tracer.finish(ri)
        raise
    ri.stats.finish(None)
    tracer.finish(ri)
    return reply


def _outcome(ri: RPCInfo, exc: BaseException) -> BaseException:
    """What a call ended with, for its stats: a cancellation that came at or after the call's
    deadline is its timeout (grpcio cancels a served call's task when grpc-timeout passes, racing the
    server_timeout middleware's own timer for the same instant)."""
    deadline = ri.deadline
    if deadline is not None and isinstance(exc, asyncio.CancelledError) and time.monotonic() >= deadline:
        timeout = RPCTimeoutError(f"{ri.method.name} was cancelled at its deadline")
        timeout.__cause__ = exc
        return timeout
    return exc
