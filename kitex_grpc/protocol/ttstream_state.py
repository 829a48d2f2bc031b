"""The life of one ttstream stream, sans-IO (KITEX-WIRE-2.md §11.3, §11.7).

:class:`StreamState` says, for each frame one side sends or receives, what follows from it: which
frames must go out first (the server's Header before its first Data or its Trailer), whether a
received frame is a message, the peer's half-close, the end of the stream, or a protocol error that
ends the stream (a second Header at the client: Kitex ``errUnexpectedHeader``, 12002).
"""

from __future__ import annotations

import enum

from kitex_grpc.errors import ProtocolError
from kitex_grpc.protocol.ttstream import FrameType

__all__ = ["Event", "StreamState"]


class Event(enum.Enum):
    """What a received frame means for the stream."""

    HEADER = "header"  # the peer's Header (metadata only)
    MESSAGE = "message"  # a Data frame: one message
    HALF_CLOSE = "half_close"  # the client's Trailer at the server: recv ends, send goes on
    END = "end"  # the server's Trailer at the client: the stream is over
    RESET = "reset"  # an Rst: the stream is cancelled by the peer
    IGNORE = "ignore"  # a Meta frame, or anything after the end


class StreamState:
    """Per-stream flags; ``client`` is the side that opened the stream."""

    __slots__ = ("client", "header_received", "header_sent", "recv_closed", "send_closed")

    def __init__(self, client: bool) -> None:
        self.client = client
        self.header_sent = client  # the client's Header opens the stream before any other frame
        self.header_received = not client  # the server creates the stream from the client's Header
        self.send_closed = False
        self.recv_closed = False

    @property
    def ended(self) -> bool:
        return self.send_closed and self.recv_closed

    def before_data(self) -> bool:
        """Call before sending Data; ``True`` when a Header must go out first (server).

        Raises :class:`ProtocolError` after close_send (Kitex: "stream is closed send").
        """
        if self.send_closed:
            raise ProtocolError("ttstream: stream is closed send")
        return self._header_due()

    def before_trailer(self) -> bool:
        """Call before sending the Trailer (half-close or end); ``True`` when a Header must go first.

        Returns ``False`` and changes nothing when the Trailer was sent already (callers skip it then:
        check :attr:`send_closed`).
        """
        due = self._header_due()
        self.send_closed = True
        return due

    def _header_due(self) -> bool:
        if self.header_sent:
            return False
        self.header_sent = True
        return True

    def receive(self, frame_type: FrameType) -> Event:
        """Classify a received frame; :class:`ProtocolError` for one that breaks the stream."""
        if self.recv_closed:
            return Event.IGNORE
        if frame_type is FrameType.DATA:
            # A Kitex server sends its Header before any Data; a Data frame first still counts
            # as the message it carries (nothing is lost by being lenient here).
            self.header_received = True
            return Event.MESSAGE
        if frame_type is FrameType.HEADER:
            if self.header_received:
                raise ProtocolError("ttstream: unexpected header frame (the stream has one already)")
            self.header_received = True
            return Event.HEADER
        if frame_type is FrameType.TRAILER:
            self.recv_closed = True
            if self.client:
                return Event.END  # the stream is over at the client once the server ends it
            return Event.HALF_CLOSE
        if frame_type is FrameType.RST:
            self.recv_closed = True
            return Event.RESET
        return Event.IGNORE  # Meta
