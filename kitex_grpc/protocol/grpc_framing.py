"""gRPC length-prefixed messages, sans-IO.

On the wire every gRPC message is ``compressed flag (u8) | length (u32, big-endian) | body``
(PROTOCOL-HTTP2.md, "Length-Prefixed-Message"). :class:`MessageDecoder` turns arbitrary chunks of a
stream's DATA payload into :class:`RawMessage` values; it checks the flag and the declared length
*before* it buffers a body, so a peer cannot make it hold more than ``max_message_size + 5`` bytes.

Compression: ``gzip`` (the one codec Kitex ships), ``deflate`` (zlib, RFC 1950, as grpc-core writes it)
and ``identity`` are known; :data:`ACCEPT_ENCODING` lists them for ``grpc-accept-encoding``. The
decompressors stop at a decompressed-size limit, so a small compressed body cannot expand without
bound.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from kitex_grpc.errors import ProtocolError
from kitex_grpc.status import StatusCode

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFLATE",
    "GZIP",
    "IDENTITY",
    "PIN_SLACK",
    "PREFIX_SIZE",
    "SUPPORTED_ENCODINGS",
    "GrpcFramingError",
    "MessageDecoder",
    "RawMessage",
    "compress",
    "decompress",
    "encode_message",
    "gzip_compress",
    "gzip_decompress",
    "message_prefix",
]

PREFIX_SIZE = 5
# Bytes of other buffers a partial message may keep alive beyond twice its own (MessageDecoder).
PIN_SLACK = 256 * 1024
# grpc-go and Kitex default for received messages (defaultServerMaxReceiveMessageSize).
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
_MAX_WIRE_LENGTH = 0xFFFFFFFF

GZIP = "gzip"
DEFLATE = "deflate"
IDENTITY = "identity"
SUPPORTED_ENCODINGS: tuple[str, ...] = (GZIP, DEFLATE, IDENTITY)
# What a client or server says it can decode (gRPC compression.md: a comma list; grpcio sends
# "identity,deflate,gzip", grpc-go the compressors it registered).
ACCEPT_ENCODING = "identity,deflate,gzip"

_PREFIX = struct.Struct(">BI")
_pack_prefix = _PREFIX.pack
_unpack_prefix_from = _PREFIX.unpack_from
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib stream with a gzip header and trailer
_DEFLATE_WBITS = zlib.MAX_WBITS  # zlib header and Adler-32 trailer (RFC 1950), grpc-core's "deflate"


class GrpcFramingError(ProtocolError):
    """A message could not be framed or unframed; ``grpc_status`` says how to end the call.

    RESOURCE_EXHAUSTED for a message over the size limit, INTERNAL for a malformed prefix or body,
    UNIMPLEMENTED for an unknown compression.
    """

    def __init__(self, detail: str, grpc_status: StatusCode) -> None:
        super().__init__(detail, grpc_status=grpc_status)


@dataclass(frozen=True, kw_only=True, slots=True)
class RawMessage:
    """One unframed gRPC message; ``data`` is still compressed when ``compressed`` is true."""

    compressed: bool
    data: bytes


def message_prefix(size: int, compressed: bool = False) -> bytes:
    """The 5-byte prefix of a gRPC message of ``size`` bytes (already compressed when ``compressed``)."""
    if size > _MAX_WIRE_LENGTH:
        raise GrpcFramingError(f"message of {size} bytes cannot be framed", StatusCode.RESOURCE_EXHAUSTED)
    return _pack_prefix(1 if compressed else 0, size)


def encode_message(body: bytes, compressed: bool = False) -> bytes:
    """Frame ``body`` (already compressed when ``compressed``) as one gRPC message."""
    return message_prefix(len(body), compressed) + body


class MessageDecoder:
    """Streaming decoder for one direction of one call.

    ``receive_data`` accepts any chunking and returns the messages it completed. After it raised,
    the decoder is poisoned: the call must end with the error's status.

    A message that arrives in pieces is joined once, when it is complete (one copy). Pieces the
    caller ``owned`` (bytes nothing will change) are kept as views until then; other pieces are
    copied as they come. Views keep the buffers they view alive: once those hold more than twice the
    message's bytes so far (plus :data:`PIN_SLACK`), the pieces are joined early, so memory stays
    within a small multiple of the bytes received.
    """

    __slots__ = (
        "_broken",
        "_compressed",
        "_got",
        "_last_held",
        "_need",
        "_parts",
        "_pinned",
        "_prefix",
        "max_message_size",
    )

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 0:
            raise ValueError("max_message_size must not be negative")
        self.max_message_size = max_message_size
        self._prefix = bytearray()  # the first bytes of a prefix split across chunks
        # -1 while reading a prefix; otherwise the body length of the message being read.
        self._need = -1
        self._compressed = False
        self._broken = False
        self._parts: list[bytes | memoryview] = []  # the body so far
        self._got = 0  # bytes in _parts
        self._pinned = 0  # bytes of the buffers _parts keep alive
        self._last_held: object = None  # the buffer the last kept view views

    @property
    def buffered(self) -> int:
        """Bytes held for a message that is not complete yet (prefix bytes included)."""
        if self._need < 0:
            return len(self._prefix)
        return PREFIX_SIZE + self._got

    @property
    def in_message(self) -> bool:
        """True when a partial message (even a partial prefix) is buffered."""
        return self._need >= 0 or bool(self._prefix)

    def receive_data(self, data: bytes | bytearray | memoryview, *, owned: bool = False) -> list[RawMessage]:
        """Decode a chunk; ``owned``: the chunk's bytes never change (they may be kept uncopied)."""
        if self._broken:
            raise GrpcFramingError("message decoder used after an error", StatusCode.INTERNAL)
        out: list[RawMessage] = []
        view = memoryview(data)
        pos = 0
        end = len(view)
        while pos < end:
            if self._need < 0:
                prefix = self._prefix
                if not prefix and end - pos >= PREFIX_SIZE:
                    # Fast path: the prefix is whole in this chunk.
                    flag, length = _unpack_prefix_from(view, pos)
                    pos += PREFIX_SIZE
                else:
                    take = min(PREFIX_SIZE - len(prefix), end - pos)
                    prefix += view[pos : pos + take]
                    pos += take
                    if len(prefix) < PREFIX_SIZE:
                        if prefix[0] > 1:  # a bad flag is known from the first byte
                            self._check_prefix(prefix[0], 0)
                        break
                    flag, length = _unpack_prefix_from(prefix, 0)
                    prefix.clear()
                self._check_prefix(flag, length)
                compressed = flag == 1
                if end - pos >= length:
                    # Fast path: the body is whole in this chunk; one copy, into bytes.
                    out.append(RawMessage(compressed=compressed, data=bytes(view[pos : pos + length])))
                    pos += length
                    continue
                self._need = length
                self._compressed = compressed
            take = min(self._need - self._got, end - pos)
            self._keep(view[pos : pos + take], owned)
            pos += take
            if self._got < self._need:
                break
            out.append(RawMessage(compressed=self._compressed, data=b"".join(self._parts)))
            self._parts = []
            self._got = self._pinned = 0
            self._last_held = None
            self._need = -1
        return out

    def _keep(self, part: memoryview, owned: bool) -> None:
        parts = self._parts
        self._got += len(part)
        if not owned:
            parts.append(part.tobytes())
            self._pinned += len(part)
            return
        parts.append(part)
        held = part.obj
        if held is not self._last_held:
            self._last_held = held
            self._pinned += len(held)  # type: ignore[arg-type]  # a buffer: bytes, bytearray or view
            if self._pinned > 2 * self._got + PIN_SLACK:
                self._parts = [b"".join(parts)]
                self._pinned = self._got
                self._last_held = None

    def _check_prefix(self, flag: int, length: int) -> None:
        if flag > 1:
            self._broken = True
            raise GrpcFramingError(f"invalid compressed flag {flag} in message prefix", StatusCode.INTERNAL)
        if length > self.max_message_size:
            self._broken = True
            raise GrpcFramingError(
                f"received message larger than max ({length} vs. {self.max_message_size})",
                StatusCode.RESOURCE_EXHAUSTED,
            )


def gzip_compress(data: bytes, level: int = 6) -> bytes:
    """gzip-wrap ``data`` (RFC 1952), as grpc-go's and Kitex's gzip compressor write it."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(data) + compressor.flush()


def gzip_decompress(data: bytes, max_size: int) -> bytes:
    """Inflate a gzip body, refusing to produce more than ``max_size`` bytes."""
    return _inflate(data, max_size, _GZIP_WBITS, GZIP)


def _inflate(data: bytes, max_size: int, wbits: int, name: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        # max_length bounds the output; asking for one byte more tells "too big" from "exactly max".
        out = inflater.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise GrpcFramingError(f"malformed {name} message: {exc}", StatusCode.INTERNAL) from exc
    if len(out) > max_size:
        raise GrpcFramingError(
            f"decompressed message larger than max ({max_size})", StatusCode.RESOURCE_EXHAUSTED
        )
    if not inflater.eof:
        raise GrpcFramingError(f"truncated {name} message", StatusCode.INTERNAL)
    if inflater.unused_data:
        raise GrpcFramingError(f"trailing bytes after {name} message", StatusCode.INTERNAL)
    return out


def compress(encoding: str, data: bytes) -> bytes:
    """Compress ``data`` with a supported ``grpc-encoding``."""
    if encoding == GZIP:
        return gzip_compress(data)
    if encoding == DEFLATE:
        return zlib.compress(data, 6)
    if encoding == IDENTITY:
        return data
    raise GrpcFramingError(f"unsupported grpc-encoding {encoding!r}", StatusCode.UNIMPLEMENTED)


def decompress(encoding: str | None, data: bytes, max_size: int) -> bytes:
    """Decompress a message received with the compressed flag set, under ``encoding``."""
    if encoding == GZIP:
        return gzip_decompress(data, max_size)
    if encoding == DEFLATE:
        return _inflate(data, max_size, _DEFLATE_WBITS, DEFLATE)
    if encoding is None or encoding == IDENTITY:
        # PROTOCOL-HTTP2.md: the flag must not be set without a message encoding.
        raise GrpcFramingError("compressed flag set with identity or empty encoding", StatusCode.INTERNAL)
    raise GrpcFramingError(f"unsupported grpc-encoding {encoding!r}", StatusCode.UNIMPLEMENTED)
