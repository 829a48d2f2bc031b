"""What a server transport decoded about one call, handed to the dispatcher in one call per kind.

A server transport routes a request to a registered method, reads the deadline, the caller's names
and the metainfo off its own wire, and puts them in a :class:`CallHead`; then it makes one call,
``dispatcher.serve_unary(head, request)`` or ``dispatcher.serve_stream(head, io)``
(:class:`~kitex_grpc.transport.base.CallDispatcher`). The dispatcher does the rest once for every
transport: installs the metainfo, builds the RPCInfo, makes it current and runs the chain.

The head is also how the transport gets back what it needs to answer: the dispatcher fills
:attr:`CallHead.ri` (the call's RPCInfo: the trailers a handler set are ``ri.response_metadata``) and
:attr:`CallHead.backward` (the handler's backward metainfo, ``backward.sent``) before the chain runs,
so ``serve_*`` can return the chain's awaitable itself, without a coroutine of its own.

Compiled with mypyc (``kitex_grpc/compiled.py``): it is built on every served call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kitex_grpc.metainfo import BackwardValues
    from kitex_grpc.rpcinfo import Metadata, RPCInfo
    from kitex_grpc.transport.base import MethodEntry

__all__ = ["CallHead"]


class CallHead:
    """One call as a server transport decoded it.

    ``entry``: the registered method (``dispatcher.lookup`` / ``search_service``);
    ``metadata``: the received headers or TTHeader str keys (becomes ``ri.metadata``, kept as given);
    ``transient`` / ``persistent``: the metainfo split from them (by the transport: the split is
    wire-specific); ``deadline``: absolute ``time.monotonic()``, or ``None``; ``peer`` / ``local``:
    the two addresses; ``caller_service`` / ``caller_method``: the caller's names when the request
    carries them (TTHeader int keys 3 and 20, gRPC ``source-*`` headers), else empty; ``seq_id``: the
    request's sequence id (TTHeader), else 0.

    Filled by the dispatcher before the chain runs: ``ri`` and ``backward`` (``None`` until then).
    """

    __slots__ = (
        "backward",
        "caller_method",
        "caller_service",
        "deadline",
        "entry",
        "local",
        "metadata",
        "peer",
        "persistent",
        "ri",
        "seq_id",
        "transient",
    )

    def __init__(
        self,
        entry: MethodEntry,
        metadata: Metadata,
        transient: Mapping[str, str],
        persistent: Mapping[str, str],
        deadline: float | None,
        peer: str,
        local: str,
        caller_service: str = "",
        caller_method: str = "",
        seq_id: int = 0,
    ) -> None:
        self.entry = entry
        self.metadata = metadata
        self.transient = transient
        self.persistent = persistent
        self.deadline = deadline
        self.peer = peer
        self.local = local
        self.caller_service = caller_service
        self.caller_method = caller_method
        self.seq_id = seq_id
        self.ri: RPCInfo | None = None
        self.backward: BackwardValues | None = None
