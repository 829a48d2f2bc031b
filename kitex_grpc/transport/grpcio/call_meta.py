"""A grpc.aio call seen by :mod:`kitex_grpc.grpc_meta` (response headers, trailers, compression).

The mapping to grpc.aio's servicer context: headers a handler sets are kept and sent with
``context.send_initial_metadata`` at ``grpc_meta.send_header``, before the first reply message, or
before the status when the call ends without one; the reply's encoding goes to
``context.set_compression`` and a per-message opt-out to ``context.disable_next_message_compression``.
grpc.aio applies ``set_compression`` only to initial metadata it is asked to send (a unary reply
without ``send_initial_metadata`` goes uncompressed, grpcio 1.85), so a call whose encoding was
chosen sends its initial metadata explicitly before the reply.
grpcio inflates requests itself and does not tell the handler their ``grpc-encoding``,
``grpc-accept-encoding`` or compressed flags, so those read as unknown (``None`` / empty).
"""

from __future__ import annotations

from typing import Any

import grpc

from kitex_grpc.grpc_meta import ServerCallMeta
from kitex_grpc.rpcinfo import Metadata

_COMPRESSION = {
    None: grpc.Compression.NoCompression,
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
}


class GrpcioCallMeta(ServerCallMeta):
    """One served grpc.aio call's response metadata state."""

    __slots__ = ("_context", "_encoding_set", "_header_md", "_sent")

    def __init__(self, context: Any) -> None:
        self._context = context
        self._header_md: Metadata | None = None
        self._sent = False
        self._encoding_set = False

    def flush_due(self) -> bool:
        """A reply message or the status goes out next: the headers count as sent from now on, and
        this says whether they must be sent first (``await flush()``). A plain call, so the common
        case of no handler metadata costs no coroutine per call."""
        if self._sent:
            return False
        self._sent = True
        return bool(self._header_md) or self._encoding_set

    async def flush(self) -> None:
        await self._context.send_initial_metadata(tuple(self._header_md or ()))

    async def before_reply(self) -> None:
        """Send pending headers before a reply message or the status (their last chance)."""
        if self.flush_due():
            await self.flush()

    def response_headers_sent(self) -> bool:
        return self._sent

    def add_response_headers(self, metadata: Metadata) -> None:
        if self._header_md is None:
            self._header_md = []
        self._header_md.extend(metadata)

    async def flush_response_headers(self) -> None:
        self._sent = True
        await self._context.send_initial_metadata(tuple(self._header_md or ()))

    def request_encoding(self) -> str | None:
        return None

    def accepted_encodings(self) -> tuple[str, ...]:
        return ()

    def set_send_encoding(self, encoding: str | None) -> None:
        self._context.set_compression(_COMPRESSION[encoding])
        self._encoding_set = True

    def disable_next_message_compression(self) -> None:
        self._context.disable_next_message_compression()

    def last_message_compressed(self) -> bool | None:
        return None
