"""Reading length-prefixed frames out of a TCP byte stream: the parts Framed and TTHeader share.

Both decoders parse a plain ``bytes`` (one copy of each read), where every field read is an index
into it: compiled, a byte read is a native load rather than a call into ``struct`` on a view. A frame
split across reads is held in a ``bytearray`` and copied out once, when it is complete.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

from kitex_grpc.errors import ProtocolError

__all__ = [
    "BytesLike",
    "FramesBeforeError",
    "StreamDecoder",
    "i32_at",
    "keep_tail",
    "parse_source",
    "u32_at",
]

BytesLike: TypeAlias = bytes | bytearray | memoryview

_I32_MAX: Final = (1 << 31) - 1
_HOLD_FROM: Final = 64 * 1024  # parse_source: reads this large are checked for a whole first frame


def u32_at(buf: bytes, pos: int) -> int:
    """The big-endian u32 at ``buf[pos:pos + 4]`` (native byte reads when compiled)."""
    return (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]


def i32_at(buf: bytes, pos: int) -> int:
    """The big-endian i32 at ``buf[pos:pos + 4]``."""
    value = u32_at(buf, pos)
    return value - (1 << 32) if value > _I32_MAX else value


def parse_source(buffer: bytearray, data: BytesLike) -> bytes | None:
    """The bytes a length-prefixed stream decoder parses next, as one ``bytes``.

    With nothing held back and a whole first frame in ``data``, that is ``data`` itself (one copy of a
    read, after which every parse step is a plain byte read). Otherwise ``data`` is appended to
    ``buffer`` and the whole buffer is returned (and ``buffer`` emptied) once its first frame is
    complete; ``None`` while it is not, so a large frame arriving in many reads is copied out once,
    not once per read.
    """
    if not buffer:
        size = len(data)
        if size < _HOLD_FROM or size >= 4 + int.from_bytes(data[:4], "big"):
            return bytes(data)
        # A large read whose first frame is not whole: held in the buffer at once (one copy, not two;
        # a small read is copied twice, which costs less than the check).
        buffer += data
        return None
    buffer += data
    if len(buffer) < 4 or len(buffer) < 4 + int.from_bytes(buffer[:4], "big"):
        return None
    # Emptied at once, so that a large frame is held twice (buffer and copy) only for this copy, not
    # while it is parsed; keep_tail then keeps what was not consumed (at most the last read's bytes).
    source = bytes(buffer)
    buffer.clear()
    return source


def keep_tail(buffer: bytearray, source: bytes, consumed: int) -> None:
    """After a parse of ``source`` (from :func:`parse_source`): hold back what was not consumed."""
    if buffer:
        del buffer[:consumed]
    elif consumed < len(source):
        buffer += source if consumed == 0 else source[consumed:]


class FramesBeforeError(ProtocolError):
    """Malformed bytes that followed complete frames in the same input.

    ``frames`` holds what the decoder built for those frames, in order: a server still answers them
    before it closes the connection for the bad bytes (a peer's pipelined requests are not lost
    because a later one is broken). The decoder has failed all the same.
    """

    def __init__(self, error: ProtocolError, frames: list[Any]) -> None:
        super().__init__(error.detail)
        self.frames = frames


class StreamDecoder:
    """The buffering and failure rules of a decoder of length-prefixed frames; subclasses split.

    ``_split(buf, frames, build)`` appends ``build(...)`` for each complete frame at the start of
    ``buf`` and returns the bytes it consumed; it raises :class:`ProtocolError` on a bad prefix as soon
    as the prefix's bytes are present, even when the frame is not complete (it is then called with the
    first ``prefix_size`` bytes held back). After a :class:`ProtocolError` (from ``_split`` or from a
    builder) the decoder is unusable and every later call raises again; frames completed earlier in
    the failing call are then carried by the error, a :class:`FramesBeforeError`.
    """

    __slots__ = ("_buffer", "_error", "_max_frame_size", "_name", "_prefix_size")

    def __init__(self, max_frame_size: int, name: str, prefix_size: int) -> None:
        self._max_frame_size = max_frame_size
        self._name = name
        self._prefix_size = prefix_size
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back as the start of an incomplete frame (non-zero at EOF means truncation)."""
        return len(self._buffer)

    def _receive(self, data: BytesLike, build: Any) -> list[Any]:
        if self._error is not None:
            raise ProtocolError(f"{self._name}: decoder already failed: {self._error.detail}")
        buffer = self._buffer
        frames: list[Any] = []
        try:
            source = parse_source(buffer, data)
            if source is None:  # the first frame is incomplete: check what of its prefix is present
                self._split(bytes(buffer[: self._prefix_size]), frames, build)
                return frames
            consumed = self._split(source, frames, build)
        except ProtocolError as exc:  # the stream cannot be re-synchronised
            self._error = exc
            buffer.clear()
            if frames:
                raise FramesBeforeError(exc, frames) from exc
            raise
        keep_tail(buffer, source, consumed)
        return frames

    def _split(self, buf: bytes, frames: list[Any], build: Any) -> int:
        raise NotImplementedError
