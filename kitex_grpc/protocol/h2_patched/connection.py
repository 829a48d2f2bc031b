"""The HTTP/2 connection classes the gRPC cores drive (part of the h2 fence, see
:mod:`kitex_grpc.protocol.h2_patched`, which says which h2 versions they were tested on and picks one).
"""

from __future__ import annotations

import struct
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.stream
import hpack
from h2.connection import AllowedStreamIDs
from h2.errors import ErrorCodes
from h2.stream import StreamInputs
from h2.utilities import authority_from_headers, extract_method_header
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from kitex_grpc.protocol.h2_hpack import CachingDecoder, CachingEncoder
from kitex_grpc.protocol.h2_limits import FloodGuard
from kitex_grpc.protocol.h2_patched.frame_buffer import DATA as _DATA
from kitex_grpc.protocol.h2_patched.frame_buffer import END_STREAM as _END_STREAM
from kitex_grpc.protocol.h2_patched.frame_buffer import LeanDataFrame, LeanFrameBuffer
from kitex_grpc.protocol.h2_validate import malformed

__all__ = ["GrpcH2Connection", "PatchedH2Connection"]


class GrpcH2Connection(h2.connection.H2Connection):
    """h2's connection with the state the gRPC cores read, through h2's public API only.

    The fallback outside :data:`TESTED_H2` (see the module docstring) and the base of
    :class:`PatchedH2Connection`.
    """

    # Whether a GOAWAY(NO_ERROR) received leaves the connection open for the calls below its last
    # stream id. h2 closes its state machine on any GOAWAY: here the cores end every call instead.
    drains_on_goaway = False

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        max_list = self.decoder.max_header_list_size
        # Header blocks over header_list_limit end their stream (patched) or the connection (here).
        self.header_list_limit = max_list
        self.oversized_streams: set[int] = set()
        self.refused_streams: list[int] = []  # over MAX_CONCURRENT_STREAMS, not yet reported
        self.guard: FloodGuard | None = None
        self.calmed: bytes | None = None  # the guard's GOAWAY debug data once it tripped
        self.writes = 0  # HEADERS and DATA sent for messages and replies: the PING policy's forgiveness

    def receive_data(self, data: Any) -> list[h2.events.Event]:
        events: list[h2.events.Event] = super().receive_data(data)
        guard = self.guard
        if guard is None:
            return events
        # The flood guard, from h2's events: the frames of this read are already handled (their acks
        # queued); a trip ends the connection with GOAWAY ENHANCE_YOUR_CALM all the same.
        for ev in events:
            if isinstance(ev, h2.events.PingReceived):
                reason = guard.ping(self.open_inbound_streams, self.writes + self.highest_inbound_stream_id)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                reason = guard.settings()
            elif isinstance(ev, h2.events.StreamReset) and ev.remote_reset:
                reason = guard.reset()
            else:
                continue
            if reason is not None:
                self.calmed = reason
                return []
        return events

    def acknowledge(self, n: int, stream_id: int) -> bool:
        """``acknowledge_received_data``; returns whether frames (a WINDOW_UPDATE) may have been
        queued: h2's public API cannot tell, so always here."""
        self.acknowledge_received_data(n, stream_id)
        return True

    def send_data_parts(
        self, stream_id: int, parts: list[memoryview], size: int, end_stream: bool = False
    ) -> None:
        """Send one DATA frame whose payload is ``parts`` joined (``size`` bytes in all)."""
        self.send_data(stream_id, b"".join(parts), end_stream=end_stream)

    def take_output(self) -> bytes | bytearray:
        """Everything queued for the socket (``data_to_send()``); the queue is left empty."""
        return self.data_to_send()

    def set_header_list_limit(self, limit: int) -> None:
        """Refuse header lists over ``limit``: here h2's decoder fails the connection over it."""
        self.header_list_limit = limit
        self.decoder.max_header_list_size = limit

    def outbound_streams_available(self) -> int:
        """``max_concurrent_streams - open_outbound_streams``, counted (a scan that sweeps closed
        streams) only once the known streams reach the limit; below it, ``limit - known`` (a lower
        bound, at least 1): a caller that waits was told 0 by an exact count, and every count after
        a stream ends while the table is at the limit is exact again."""
        limit = int(self.remote_settings.max_concurrent_streams)
        known = len(self.streams)  # open outbound streams are a subset
        if known < limit:
            return limit - known
        return max(0, limit - int(self.open_outbound_streams))


class PatchedH2Connection(GrpcH2Connection):
    """h2's connection with a graceful GOAWAY that does not close it, and lean send and receive paths.

    GOAWAY: gRPC servers drain with GOAWAY(NO_ERROR) and keep serving the calls below its last stream
    id; grpc-go follows the first GOAWAY with a PING, often in the same read. h2 closes its state
    machine on any GOAWAY and would reject both. Overrides h2's (private, stable since h2 3) handler.

    Sending (the hot path: every call sends HEADERS twice and DATA once): ``send_headers`` and
    ``send_data`` drive h2's own stream and connection state machines and flow-control counters
    exactly as h2 does, but write the frame bytes directly instead of building hyperframe objects,
    and encode with the memoising HPACK encoder (:mod:`~kitex_grpc.protocol.h2_hpack`). Anything
    unusual (priority, padding, a frame over the size or window limits, an informational response,
    an unknown stream) takes h2's own path. h2 counts open streams by scanning every stream (and
    sweeps closed ones) each time one opens; with an unlimited peer limit this core sweeps only when
    the table doubled. Pinned to h2 4.4 by tests/protocol/test_h2_call.py.

    Receiving: unpadded DATA frames are cut from the read buffer as :class:`LeanDataFrame` (mostly
    without copies, see :class:`LeanFrameBuffer`) and, on a stream plainly open for them, counted
    against both windows without h2's state-machine look-ups, a request's END_STREAM included (the
    same checks and events otherwise). Header blocks over ``header_list_limit`` end their stream
    (``oversized_streams``), not the connection (see :meth:`set_header_list_limit`). The flood guard
    checks PING, SETTINGS and RST_STREAM frames as they are parsed.
    """

    # The guard runs in the frame handlers below, not over the events of a read.
    receive_data = h2.connection.H2Connection.receive_data
    drains_on_goaway = True  # _receive_goaway_frame below

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        self.encoder = CachingEncoder()
        self.decoder: CachingDecoder = CachingDecoder(self.header_list_limit)
        self._sweep_at = 64
        self.incoming_buffer: LeanFrameBuffer = LeanFrameBuffer(server=not config.client_side)
        self._frame_dispatch_table[LeanDataFrame] = self._receive_fast_data_frame  # type: ignore[index]

    def acknowledge(self, n: int, stream_id: int) -> bool:
        # h2 queues a WINDOW_UPDATE only once half a window was consumed: say whether it did, so the
        # shell does not schedule a write for nothing.
        out = self._data_to_send
        before = len(out)
        self.acknowledge_received_data(n, stream_id)
        return len(out) != before

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Any], list[h2.events.Event]]:
        machine = self.state_machine
        state = machine.state
        events = machine.process_input(h2.connection.ConnectionInputs.RECV_GOAWAY)
        if frame.error_code == 0 and state in _OPEN_STATES:
            machine.state = state  # drain: frames of the remaining calls still flow both ways
        else:
            self.clear_outbound_data_buffer()
        ev = h2.events.ConnectionTerminated()
        ev.error_code = frame.error_code
        ev.last_stream_id = frame.last_stream_id
        ev.additional_data = frame.additional_data or None
        events.append(ev)
        return [], events

    def _receive_frame(self, frame: Any) -> list[h2.events.Event]:
        # h2's, minus its trace log, which formats repr(frame) (the payload included) for every frame.
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except h2.exceptions.StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except h2.exceptions.StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise h2.exceptions.StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            if frames:
                self._prepare_for_sending(frames)
        return events  # type: ignore[no-any-return]

    # Flood guard (server): PING, SETTINGS and RST_STREAM frames are checked as they are parsed. Once
    # the guard trips, the rest of the read is dropped unparsed and the core sends GOAWAY.

    def _calm(self, reason: bytes) -> tuple[list[Any], list[h2.events.Event]]:
        self.calmed = reason
        self.incoming_buffer.discard()  # the frame loop ends: nothing more is parsed
        return [], []

    def _receive_ping_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        guard = self.guard
        if guard is not None and "ACK" not in frame.flags:
            # Forgiven after HEADERS or DATA written (grpc-go) or a stream opened: both only grow.
            reason = guard.ping(self.open_inbound_streams, self.writes + self.highest_inbound_stream_id)
            if reason is not None:
                return self._calm(reason)
        return super()._receive_ping_frame(frame)

    def _receive_settings_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        guard = self.guard
        if guard is not None and "ACK" not in frame.flags:
            reason = guard.settings()
            if reason is not None:
                return self._calm(reason)
        return super()._receive_settings_frame(frame)

    def _receive_rst_stream_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        guard = self.guard
        if guard is not None:
            reason = guard.reset()
            if reason is not None:
                return self._calm(reason)
        return super()._receive_rst_stream_frame(frame)

    def _receive_fast_data_frame(self, frame: LeanDataFrame) -> tuple[list[Any], list[h2.events.Event]]:
        # h2's _receive_data_frame without its state-machine look-ups for the common cases: DATA on an
        # open connection, for a stream that is open for receiving and has seen its headers, with no
        # content-length to check; with END_STREAM only on an OPEN stream (a request's last DATA, as
        # every unary call sends it). The same window accounting, the same events. Anything else gets
        # a hyperframe DataFrame and h2's own path.
        stream = self.streams.get(frame.stream_id)
        state = self.state_machine.state
        if (
            stream is None
            or (state is not _CLIENT_OPEN and state is not _SERVER_OPEN)
            or stream._expected_content_length is not None
        ):
            return super()._receive_data_frame(frame.to_hyperframe())
        machine = stream.state_machine
        if not machine.headers_received or (
            machine.state is not _STREAM_OPEN
            and (frame.end_stream or machine.state is not _STREAM_HALF_CLOSED_LOCAL)
        ):
            return super()._receive_data_frame(frame.to_hyperframe())
        data = frame.data
        size = len(data)
        self._inbound_flow_control_window_manager.window_consumed(size)
        stream._inbound_window_manager.window_consumed(size)
        stream._actual_content_length += size
        event = h2.events.DataReceived(stream_id=frame.stream_id)
        event.data = data  # type: ignore[assignment]  # a read-only view: the core takes any buffer
        event.flow_controlled_length = size
        if not frame.end_stream:
            return [], [event]
        # OPEN -> HALF_CLOSED_REMOTE: h2's own transition, which makes the StreamEnded event.
        ended = machine.process_input(StreamInputs.RECV_END_STREAM)
        event.stream_ended = cast("h2.events.StreamEnded", ended[0])
        return [], [event, *ended]

    def set_header_list_limit(self, limit: int) -> None:
        """Refuse header lists over ``limit`` per stream; only one over twice that (plus 64 KiB), which
        must not be held in memory at all, fails the whole connection."""
        self.header_list_limit = limit
        self.decoder.max_header_list_size = 2 * limit + _HEADER_LIST_SLACK

    def _receive_headers_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        # h2's, except that the inbound stream limit is counted (an O(n) scan) only when it is near.
        refuse = False
        if frame.stream_id not in self.streams:
            limit = self.local_settings.max_concurrent_streams
            streams = self.streams
            # Open streams are a subset of the known ones: only a table as large as the limit can
            # hold too many, and only then are they counted (an O(n) scan that also sweeps).
            if len(streams) >= limit or len(streams) >= self._sweep_at:
                value = self.open_inbound_streams  # counts, and forgets closed streams
                self._sweep_at = 2 * len(streams) + 64
                if value + 1 > limit:
                    if self.config.client_side:
                        raise h2.exceptions.TooManyStreamsError(f"Max inbound streams is {limit}")
                    refuse = True
        try:
            headers, size = self.decoder.decode_sized(frame.data)
        except hpack.OversizedHeaderListError as e:
            raise h2.exceptions.DenialOfServiceError(f"Oversized header block: {e}") from e
        except (hpack.HPACKError, IndexError, TypeError, UnicodeDecodeError) as e:
            raise h2.exceptions.ProtocolError(f"Error decoding header block: {e}") from e
        events = self.state_machine.process_input(h2.connection.ConnectionInputs.RECV_HEADERS)
        if refuse:
            guard = self.guard
            reason = None if guard is None else guard.reset()  # a refusal spends the reset budget
            if reason is not None:
                return self._calm(reason)
            return self._refuse(frame.stream_id), events
        stream = self._get_or_create_stream(frame.stream_id, AllowedStreamIDs(not self.config.client_side))
        frames, stream_events = stream.receive_headers(
            headers, "END_STREAM" in frame.flags, self.config.header_encoding
        )
        if "PRIORITY" in frame.flags:
            _, p_events = self._receive_priority_frame(frame)
            stream_events[0].priority_updated = p_events[0]  # type: ignore[attr-defined]
            stream_events.extend(p_events)
        if size > self.header_list_limit:
            # Over our SETTINGS_MAX_HEADER_LIST_SIZE but decoded whole (HPACK state stays in step): the
            # core ends this stream only, as grpc-go does for a truncated header block. Every headers
            # event the core handles takes its stream id out again.
            self.oversized_streams.add(frame.stream_id)
        elif malformed(stream_events[0], headers, self.config.client_side) is not None:
            # RFC 9113 §8.1.1: a stream error PROTOCOL_ERROR (that stream alone); the core sees a
            # local reset: a call it started fails, a request that never started stays unseen. Each
            # spends the reset budget, as a refusal does: a stream of them is a rapid-reset flood.
            guard = self.guard
            reason = None if guard is None else guard.reset()
            if reason is not None:
                return self._calm(reason)
            reset = h2.events.StreamReset(
                stream_id=frame.stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False
            )
            return ([] if stream.closed else stream.reset_stream(ErrorCodes.PROTOCOL_ERROR)), [*events, reset]
        return frames, events + stream_events

    def _refuse(self, stream_id: int) -> list[Any]:
        # Over our MAX_CONCURRENT_STREAMS: the headers were decoded (HPACK state stays in step) and this
        # stream alone is refused (RFC 9113 §5.1.2, §8.7: never processed, safe to retry), as grpc-go
        # and gRPC C-core do; the connection and its other calls go on. No h2 stream is made: h2 sees
        # the id as one it reset (later frames on it are answered as h2 answers those).
        if stream_id <= self.highest_inbound_stream_id:
            raise h2.exceptions.StreamIDTooLowError(stream_id, self.highest_inbound_stream_id)
        if stream_id % 2 == 0:
            raise h2.exceptions.ProtocolError("Invalid stream ID for peer.")
        self.highest_inbound_stream_id = stream_id
        self._closed_streams[stream_id] = h2.stream.StreamClosedBy.SEND_RST_STREAM
        self.refused_streams.append(stream_id)
        reset = RstStreamFrame(stream_id)
        reset.error_code = ErrorCodes.REFUSED_STREAM
        return [reset]

    def send_headers(
        self,
        stream_id: int,
        headers: Any,
        end_stream: bool = False,
        priority_weight: int | None = None,
        priority_depends_on: int | None = None,
        priority_exclusive: bool | None = None,
    ) -> None:
        if (
            type(headers) is not list
            or priority_weight is not None
            or priority_depends_on is not None
            or priority_exclusive is not None
            or not headers
            or (not self.config.client_side and headers[0][0] == b":status" and headers[0][1][:1] == b"1")
        ):
            return super().send_headers(
                stream_id, headers, end_stream, priority_weight, priority_depends_on, priority_exclusive
            )
        streams = self.streams
        stream = streams.get(stream_id)
        if stream is None:
            limit = self.remote_settings.max_concurrent_streams
            if len(streams) + 1 > limit or len(streams) >= self._sweep_at:
                value = self.open_outbound_streams  # counts, and forgets closed streams
                self._sweep_at = 2 * len(streams) + 64
                if value + 1 > limit:
                    raise h2.exceptions.TooManyStreamsError(f"Max outbound streams is {limit}, {value} open")
        self.state_machine.process_input(_SEND_HEADERS)
        if stream is None:
            stream = self._get_or_create_stream(stream_id, AllowedStreamIDs(self.config.client_side))
        machine = stream.state_machine
        machine.process_input(StreamInputs.SEND_HEADERS)  # before encoding, as h2: HPACK state moves
        block = self.encoder.encode(headers)
        flags = _END_HEADERS
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
            flags |= _END_STREAM
        if machine.trailers_sent and not end_stream:
            raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set.")
        if machine.client and stream._authority is None:
            stream._authority = authority_from_headers(headers)
        stream.request_method = extract_method_header(headers)
        out = self._data_to_send
        size = len(block)
        max_frame = self.max_outbound_frame_size
        if size <= max_frame:
            out += _FRAME_HEADER.pack(size >> 16, size & 0xFFFF, _HEADERS, flags, stream_id)
            out += block
            return None
        # HEADERS then CONTINUATION frames; END_STREAM on the first, END_HEADERS on the last.
        view = memoryview(block)
        for start in range(0, size, max_frame):
            chunk = view[start : start + max_frame]
            n = len(chunk)
            kind = _HEADERS if start == 0 else _CONTINUATION
            frame_flags = (flags & _END_STREAM) if start == 0 else 0
            if start + max_frame >= size:
                frame_flags |= _END_HEADERS
            out += _FRAME_HEADER.pack(n >> 16, n & 0xFFFF, kind, frame_flags, stream_id)
            out += chunk
        return None

    def send_data(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool = False, pad_length: Any = None
    ) -> None:
        if pad_length is None and self._data_frame_header(stream_id, len(data), end_stream):
            self._data_to_send += data
            return None
        return super().send_data(stream_id, data, end_stream, pad_length)

    def send_data_parts(
        self, stream_id: int, parts: list[memoryview], size: int, end_stream: bool = False
    ) -> None:
        # The frame's payload goes straight from the parts into the output buffer: one copy.
        if self._data_frame_header(stream_id, size, end_stream):
            out = self._data_to_send
            for part in parts:
                out += part
            return None
        return super().send_data_parts(stream_id, parts, size, end_stream)

    def _data_frame_header(self, stream_id: int, size: int, end_stream: bool) -> bool:
        """Write the header of an unpadded DATA frame of ``size`` bytes, with h2's state and window
        accounting, and return True; or do nothing and return False when h2's own path must send it
        (an unknown stream, a frame over the size or window limits)."""
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or size > self.max_outbound_frame_size
            or size > self.outbound_flow_control_window
            or size > stream.outbound_flow_control_window
        ):
            return False
        machine = stream.state_machine
        state = self.state_machine.state
        # SEND_DATA leaves an open connection and a stream we may send on as they are, with no side
        # effect (h2's transition tables): skip the two table look-ups then.
        if (state is not _CLIENT_OPEN and state is not _SERVER_OPEN) or (
            machine.state is not _STREAM_OPEN and machine.state is not _STREAM_HALF_CLOSED_REMOTE
        ):
            self.state_machine.process_input(_SEND_DATA)
            machine.process_input(StreamInputs.SEND_DATA)
        flags = 0
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
            flags = _END_STREAM
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        self._data_to_send += _FRAME_HEADER.pack(size >> 16, size & 0xFFFF, _DATA, flags, stream_id)
        return True

    def take_output(self) -> bytes | bytearray:
        # h2's data_to_send copies its buffer into bytes; handing out the buffer itself (nobody else
        # holds it) saves a copy of everything sent.
        out = self._data_to_send
        self._data_to_send = bytearray()
        return out


_FRAME_HEADER = struct.Struct(">BHBBL")  # 24-bit length as (high byte, low 16 bits), type, flags, id
_HEADERS = 0x1
_CONTINUATION = 0x9
_END_HEADERS = 0x4
_HEADER_LIST_SLACK = 64 * 1024
_SEND_HEADERS = h2.connection.ConnectionInputs.SEND_HEADERS
_SEND_DATA = h2.connection.ConnectionInputs.SEND_DATA


_CLIENT_OPEN = h2.connection.ConnectionState.CLIENT_OPEN
_SERVER_OPEN = h2.connection.ConnectionState.SERVER_OPEN
_OPEN_STATES = (_CLIENT_OPEN, _SERVER_OPEN)
_STREAM_OPEN = h2.stream.StreamState.OPEN
_STREAM_HALF_CLOSED_LOCAL = h2.stream.StreamState.HALF_CLOSED_LOCAL
_STREAM_HALF_CLOSED_REMOTE = h2.stream.StreamState.HALF_CLOSED_REMOTE
