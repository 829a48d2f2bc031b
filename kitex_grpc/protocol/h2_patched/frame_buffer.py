"""h2's frame buffer with a lean, mostly copy-free path for DATA frames (part of the h2 fence, see
:mod:`kitex_grpc.protocol.h2_patched`: it reads and overrides h2's private frame-buffer state)."""

from __future__ import annotations

import struct
from typing import Any

import h2.frame_buffer
from hyperframe.frame import DataFrame

__all__ = ["DATA", "END_STREAM", "LeanDataFrame", "LeanFrameBuffer"]

DATA = 0x0  # frame type (RFC 9113 §6.1)
END_STREAM = 0x1  # DATA and HEADERS flags
PADDED = 0x8
STREAM_ID = struct.Struct(">L")


class LeanDataFrame:
    """An unpadded DATA frame as :class:`LeanFrameBuffer` yields it; hyperframe's ``DataFrame`` (with
    its flag set) is built only when h2's own path needs one. ``data`` is bytes or a read-only view
    of bytes nothing will change (see :class:`LeanFrameBuffer`)."""

    __slots__ = ("data", "end_stream", "stream_id")

    def __init__(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.end_stream = end_stream

    def to_hyperframe(self) -> DataFrame:
        return DataFrame(self.stream_id, bytes(self.data), flags=("END_STREAM",) if self.end_stream else ())


class LeanFrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame buffer, with a lean path for unpadded DATA frames on a stream (RFC 9113 §6.1), the
    bytes of large messages. They are cut out as :class:`LeanDataFrame`, without hyperframe's header and
    flag objects, and without copying the payload where it can be avoided:

    - a socket read of 16 KiB or more first completes the frame whose start the buffer holds; the
      rest is not appended to the buffer but kept as immutable ``bytes`` (copied only if it was not
      bytes already), and the frames wholly inside it are cut out of it, a DATA payload as a view; any
      other frame is handed to h2's parser alone; only a trailing partial frame is buffered;
    - a DATA frame of 16 KiB or more completed in the buffer is taken out as a view of the buffer when
      the bytes behind it are fewer than its payload, and those are copied into a new buffer instead.

    Smaller reads and frames are copied as h2 copies them: for a few KiB that is fewer steps.

    A frame's declared length is checked against SETTINGS_MAX_FRAME_SIZE as soon as its header is
    read, not after its payload arrived. Every other frame, and DATA inside a header block (a protocol
    error h2 reports), goes through h2's parser.
    """

    def __init__(self, server: bool = False) -> None:
        super().__init__(server)
        self._read: memoryview | None = None  # the read being cut into frames, from _pos on
        self._pos = 0
        self._tail: bytearray | None = None  # the partial frame behind _read, the buffer after it

    def add_data(self, data: Any) -> None:
        if self._read is not None or self._tail is not None:
            # The last read was not parsed to its end (an error stopped h2's loop): keep the order by
            # buffering what is left of it and all of this one.
            if self._read is not None:
                self._data += self._read[self._pos :]
            if self._tail is not None:
                self._data += self._tail
            self._read = self._tail = None
            super().add_data(data)
            return
        if self._preamble_len or len(data) < VIEW_FROM:
            super().add_data(data)  # small reads: copying them is cheaper than cutting views
            return
        view = memoryview(data)
        pos = 0
        size = len(view)
        buf = self._data
        # The buffer holds at most the start of one frame (every whole frame was parsed): complete
        # that frame from this read first.
        while buf and pos < size:
            if len(buf) >= 9:
                length = (buf[0] << 16) | (buf[1] << 8) | buf[2]
                self._validate_frame_length(length)
                missing = 9 + length - len(buf)
                if missing <= 0:
                    break
            else:
                missing = 9 - len(buf)
            buf += view[pos : pos + missing]
            pos += missing
        if pos >= size:
            return
        # The rest of the read is cut into frames without copying.
        if type(data) is bytes:
            self._read = view[pos:] if pos else view
            self._pos = 0
            return
        # A read may view a buffer that is reused once this call returns (transport/receive_buffer.py):
        # its whole frames are copied once, into bytes; in a large read, a partial frame at its end
        # is copied once too, straight into what becomes the buffer.
        cut = whole_frames_end(view, pos) if size - pos >= SCAN_FROM else size
        if cut < size:
            self._tail = bytearray(view[cut:])
        if cut > pos:
            self._read = memoryview(view[pos:cut].tobytes())
            self._pos = 0

    def discard(self) -> None:
        """Drop everything not parsed yet (the connection is ending)."""
        self._read = self._tail = None
        del self._data[:]

    def __next__(self) -> Any:
        if self._data:
            return self._next_buffered()
        read = self._read
        if read is None:
            if self._tail is not None:  # a partial frame: it waits for the next read
                self._data, self._tail = self._tail, None
            raise StopIteration
        pos = self._pos
        size = len(read)
        if size - pos >= 9:
            length = (read[pos] << 16) | (read[pos + 1] << 8) | read[pos + 2]
            self._validate_frame_length(length)
            end = pos + 9 + length
            if end <= size:
                self._pos = end
                if end == size:
                    self._read = None
                flags = read[pos + 4]
                if read[pos + 3] == DATA and not flags & PADDED and not self._headers_buffer:
                    stream_id = STREAM_ID.unpack_from(read, pos + 5)[0] & 0x7FFFFFFF
                    if stream_id:  # DATA on stream 0 is a connection error: h2's parser says so
                        return LeanDataFrame(stream_id, read[pos + 9 : end], bool(flags & END_STREAM))
                self._data += read[pos:end]  # one whole frame, for h2's parser
                return super().__next__()
        self._data += read[pos:]  # a partial frame waits for the next read
        self._read = None
        raise StopIteration

    def _next_buffered(self) -> Any:
        buf = self._data
        if len(buf) < 9:
            raise StopIteration
        length = (buf[0] << 16) | (buf[1] << 8) | buf[2]
        self._validate_frame_length(length)
        end = 9 + length
        if buf[3] != DATA or buf[4] & PADDED or self._headers_buffer:
            return super().__next__()
        if len(buf) < end:
            raise StopIteration
        stream_id = STREAM_ID.unpack_from(buf, 5)[0] & 0x7FFFFFFF
        if not stream_id:
            return super().__next__()
        end_stream = bool(buf[4] & END_STREAM)
        data: bytes | memoryview
        if length >= VIEW_FROM and len(buf) - end < length:
            # Fewer bytes behind the frame than in it: move those to a new buffer and keep the old
            # one, which nothing else refers to any more, for the payload's view.
            self._data = buf[end:]
            data = memoryview(buf).toreadonly()[9:end]
        else:
            with memoryview(buf) as view:
                data = view[9:end].tobytes()
            del buf[:end]
        return LeanDataFrame(stream_id, data, end_stream)


def whole_frames_end(view: memoryview, pos: int) -> int:
    """Where the last frame wholly inside ``view[pos:]`` ends (``pos`` if none is)."""
    end = len(view)
    while pos + 9 <= end:
        after = pos + 9 + ((view[pos] << 16) | (view[pos + 1] << 8) | view[pos + 2])
        if after > end:
            break
        pos = after
    return pos


# LeanFrameBuffer: reads and DATA frames from this size on are cut into views; smaller ones are copied
# (fewer steps). A read this large has its trailing partial frame copied straight into the buffer.
VIEW_FROM = 16 * 1024
SCAN_FROM = 64 * 1024
