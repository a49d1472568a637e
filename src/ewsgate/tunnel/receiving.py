"""The receive path of a tunnel connection end: bytes in, frames checked, events out.

:meth:`Receiving.receive_data` feeds the parser and applies each frame to the stream table and
windows of :class:`~ewsgate.tunnel.base.ConnectionBase`. It never raises for any input: a frame
that breaks one stream's rules resets that stream (RESET out, :class:`StreamReset` in); any
other violation closes the connection (GOAWAY with the code, :class:`ConnectionTerminated`).
"""

from __future__ import annotations

import struct

from ewsgate.tunnel.base import ConnectionBase, StreamRecord
from ewsgate.tunnel.budgets import BudgetExceededError
from ewsgate.tunnel.config import MAX_WINDOW, ProtocolConfig, Role
from ewsgate.tunnel.errors import ErrorCode, RemoteProtocolError
from ewsgate.tunnel.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoawayReceived,
    HelloReceived,
    PingAcknowledged,
    StreamAccepted,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from ewsgate.tunnel.frames import (
    HEADER,
    PROTOCOL_VERSION,
    Flag,
    Frame,
    FrameParser,
    FrameType,
    Setting,
    encode_frame,
    encode_reset,
    parse_goaway,
    parse_hello,
    parse_open,
    parse_reset,
)
from ewsgate.tunnel.state import ConnectionState, StreamInput, StreamState, TransitionError, advance

__all__ = ["Receiving"]

_U32 = struct.Struct("!I")
_DATA = int(FrameType.DATA)  # plain ints: enum operators are Python-level calls
_END = int(Flag.END_STREAM)
_RECEIVING = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)


class Receiving(ConnectionBase):
    """Adds :meth:`receive_data` to the connection state."""

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed received bytes; returns what happened. Never raises for any input.

        ``data`` may be a view of a buffer the caller reuses: nothing refers to it afterwards.
        """
        if self.state is ConnectionState.CLOSED:
            return []
        events: list[Event] = []
        if not data:
            return events
        self._activity = True
        parser = self._parser
        parser.feed(data)
        try:
            self._parse(parser, events)
        finally:
            parser.detach()  # never keep a reference to the caller's (reusable) buffer
            self._data_parts.clear()  # (already delivered, unless something unforeseen raised)
        return events

    def _parse(self, parser: FrameParser, events: list[Event]) -> None:
        try:
            while True:
                frame = parser.next_frame()
                if frame is None:
                    break
                try:
                    if frame.type == _DATA:
                        self._on_data(frame, events)
                    else:
                        self._deliver_data(events)
                        self._on_control(frame, events)
                except RemoteProtocolError as exc:
                    if not exc.stream_id:
                        raise
                    self._deliver_data(events)
                    self._stream_error(exc, events)
                if self._is_closed():
                    break
            self._deliver_data(events)
        except RemoteProtocolError as exc:
            self._deliver_data(events)
            self._terminate_local(exc.code, exc.reason)
            events.append(ConnectionTerminated(
                error_code=exc.code, reason=exc.reason, remote=False,
                budget=exc.budget if isinstance(exc, BudgetExceededError) else ""))
        except (ValueError, TransitionError) as exc:  # defensive: a bug must not leak state
            self._data_parts.clear()
            self._terminate_local(ErrorCode.INTERNAL_ERROR, str(exc))
            events.append(ConnectionTerminated(error_code=ErrorCode.INTERNAL_ERROR,
                                               reason=str(exc), remote=False))

    def _deliver_data(self, events: list[Event], end_stream: bool = False) -> None:
        """Turn the DATA pieces held for one stream into one :class:`DataReceived`.

        Consecutive pieces for the same stream in one :meth:`receive_data` call (several
        frames in one read of the transport) are joined: one copy out of the caller's buffer,
        one event, one read for the application instead of one per frame. Called before any
        other event is added, so the order of events is the order of the frames.
        """
        parts = self._data_parts
        if not parts:
            return
        data = b"".join(parts) if len(parts) > 1 else bytes(parts[0])
        parts.clear()
        events.append(DataReceived(stream_id=self._data_sid, data=data, end_stream=end_stream))

    def _on_data(self, frame: Frame, events: list[Event]) -> None:
        sid = frame.stream_id
        if frame.first:
            self._data_skip = True  # until the checks below pass, the frame's pieces are dropped
            self._require_established()
            if sid == 0:
                raise RemoteProtocolError("DATA on stream 0")
            size = frame.length
            if not size and not frame.flags & _END:
                budgets = self._budgets
                budgets.empty_data -= 1
                if budgets.empty_data < 0:
                    raise budgets.exceeded("empty_data")
            if size > self._conn_recv_window:
                raise RemoteProtocolError(
                    f"DATA of {size} bytes exceeds the connection window "
                    f"({self._conn_recv_window})", ErrorCode.FLOW_CONTROL_ERROR)
            self._conn_recv_window -= size
            self._conn_unacked += size
            if self._conn_unacked >= self.config.connection_window // 4:
                self._conn_recv_window += self._conn_unacked
                self._out.append(HEADER.pack(4, FrameType.WINDOW, 0, 0))
                self._out.append(_U32.pack(self._conn_unacked))
                self._conn_unacked = 0
            stream = self._streams.get(sid)
            if stream is None:
                self._on_closed_stream_frame(sid, "DATA")
                return
            if stream.state not in _RECEIVING:
                raise RemoteProtocolError(f"DATA on stream {sid} while it is "
                                          f"{stream.state.name.lower()}",
                                          ErrorCode.STREAM_CLOSED if stream.state is
                                          StreamState.HALF_CLOSED_REMOTE else
                                          ErrorCode.PROTOCOL_ERROR, sid)
            if size > stream.recv_window:
                raise RemoteProtocolError(
                    f"DATA of {size} bytes exceeds stream {sid}'s window ({stream.recv_window})",
                    ErrorCode.FLOW_CONTROL_ERROR, sid)
            stream.recv_window -= size
            self._data_skip = False
        elif self._data_skip:
            return
        stream = self._streams.get(sid)
        if stream is None:  # reset by us between two pieces of the frame
            return
        end = frame.last and bool(frame.flags & _END)
        if frame.payload:
            if sid != self._data_sid:
                self._deliver_data(events)
                self._data_sid = sid
            self._data_parts.append(frame.payload)
        if end:
            if sid != self._data_sid:
                self._deliver_data(events)  # another stream's pieces come first
            self._deliver_data(events, end_stream=True)
            stream.state = advance(stream.state, StreamInput.RECV_FIN)
            events.append(StreamEnded(stream_id=sid))
            if stream.state is StreamState.CLOSED:
                self._forget(sid, peer_knows=True)

    def _on_closed_stream_frame(self, sid: int, what: str) -> None:
        """A frame for a stream we no longer track: late (ignore) or a peer error."""
        if self._is_unknown(sid):
            raise RemoteProtocolError(f"{what} for stream {sid}, which was never opened")
        if what == "DATA" and not self._closed.get(sid):
            return  # in flight when we reset it: bounded by the windows, dropped silently
        budgets = self._budgets
        budgets.closed_frames -= 1
        if budgets.closed_frames < 0:
            raise budgets.exceeded("closed_frames")
        if what == "DATA":
            # the peer itself reset or finished this stream, yet still sends on it
            self._out.append(encode_reset(sid, ErrorCode.STREAM_CLOSED,
                                          f"DATA on stream {sid} after it was closed"))

    def _is_unknown(self, sid: int) -> bool:
        if self.role is Role.LISTENER:
            return sid >= self._next_stream_id or sid % 2 == 0
        return sid > self._last_peer_stream

    def _on_control(self, frame: Frame, events: list[Event]) -> None:
        ftype, sid, payload = frame.type, frame.stream_id, bytes(frame.payload)
        if ftype == FrameType.HELLO:
            self._on_hello(frame, events)
            return
        if ftype == FrameType.GOAWAY:
            self._on_goaway(frame, events)
            return
        self._require_established()
        if ftype == FrameType.WINDOW:
            if len(payload) != 4:
                raise RemoteProtocolError("WINDOW payload must be 4 bytes",
                                          ErrorCode.FRAME_SIZE_ERROR)
            self._on_window(sid, _U32.unpack(payload)[0], events)
        elif ftype == FrameType.PING:
            if sid != 0 or len(payload) != 8:
                raise RemoteProtocolError("PING must be 8 bytes on stream 0",
                                          ErrorCode.FRAME_SIZE_ERROR)
            if frame.flags & Flag.ACK:
                if payload == self._ping_payload:
                    self._ping_sent_at = None
                events.append(PingAcknowledged(payload=payload))
            else:
                self._pings_answered += 1
                if self._pings_answered > self.config.max_pings_per_tick:
                    raise RemoteProtocolError(
                        f"more than {self.config.max_pings_per_tick} PINGs between two "
                        "keepalive ticks", ErrorCode.ENHANCE_YOUR_CALM)
                self._out.append(encode_frame(FrameType.PING, Flag.ACK, 0, payload))
        elif ftype == FrameType.OPEN:
            self._on_open(sid, payload, events)
        elif ftype == FrameType.ACCEPT:
            self._on_stream_input(sid, StreamInput.RECV_ACCEPT, "ACCEPT")
            if sid in self._streams:
                events.append(StreamAccepted(stream_id=sid))
        elif ftype == FrameType.RESET:
            if sid == 0:
                raise RemoteProtocolError("RESET on stream 0")
            code, reason = parse_reset(payload)
            stream = self._streams.get(sid)
            if stream is not None:
                if self.role is Role.DIALER and (
                        stream.state is StreamState.PENDING or self._never_received(stream)):
                    # the opener reset it before ACCEPT, or before sending a byte: work (a
                    # device dial) for nothing -- HTTP/2's rapid reset
                    budgets = self._budgets
                    budgets.early_resets -= 1
                    if budgets.early_resets < 0:
                        raise budgets.exceeded("early_resets")
                self._forget(sid, peer_knows=True)
                events.append(StreamReset(stream_id=sid, error_code=ErrorCode.from_wire(code),
                                          reason=reason, remote=True))
            else:
                self._on_closed_stream_frame(sid, "RESET")
        else:
            raise RemoteProtocolError(f"unknown frame type {ftype}")

    def _on_hello(self, frame: Frame, events: list[Event]) -> None:
        if self._hello_received or frame.stream_id != 0:
            raise RemoteProtocolError("a second HELLO, or HELLO on a stream")
        version, settings, credential = parse_hello(bytes(frame.payload))
        if version != PROTOCOL_VERSION:
            raise RemoteProtocolError(f"peer speaks tunnel protocol version {version}; this "
                                      f"end speaks {PROTOCOL_VERSION}; upgrade the older side",
                                      ErrorCode.UNSUPPORTED_VERSION)
        defaults = ProtocolConfig().settings()
        merged = {**defaults, **settings}
        window = merged[Setting.INITIAL_STREAM_WINDOW]
        conn_window = merged[Setting.CONNECTION_WINDOW]
        max_frame = merged[Setting.MAX_FRAME_SIZE]
        if not (1 <= window <= MAX_WINDOW and 1 <= conn_window <= MAX_WINDOW
                and 16 * 1024 <= max_frame <= 16 * 1024 * 1024):
            raise RemoteProtocolError(f"HELLO settings out of range: {settings}")
        self._peer_stream_window = window
        self._conn_send_window = conn_window
        self._peer_max_frame = min(max_frame, self.config.max_frame_size)
        self._peer_max_streams = merged[Setting.MAX_CONCURRENT_STREAMS]
        self._peer_max_metadata = merged[Setting.MAX_METADATA]
        # the peer returns credit in quarter windows; much less than that is a tiny-credit flood
        self._small_stream_credit = min(1024, window // 4)
        self._small_conn_credit = min(1024, conn_window // 4)
        self._hello_received = True
        if self.role is Role.DIALER:
            self.state = ConnectionState.OPEN
        events.append(HelloReceived(version=version, settings=settings, credential=credential))

    def _on_goaway(self, frame: Frame, events: list[Event]) -> None:
        if frame.stream_id != 0:
            raise RemoteProtocolError("GOAWAY on a stream")
        last, code, reason = parse_goaway(bytes(frame.payload))
        self._goaway_received = True
        events.append(GoawayReceived(last_stream_id=last, error_code=ErrorCode.from_wire(code),
                                     reason=reason))
        if code != ErrorCode.NO_ERROR or self.state is ConnectionState.HANDSHAKE:
            self._streams.clear()
            self._window_growth = 0
            self.state = ConnectionState.CLOSED
            events.append(ConnectionTerminated(error_code=ErrorCode.from_wire(code),
                                               reason=reason, remote=True))
            return
        self.state = ConnectionState.CLOSING
        for sid in [s for s in self._streams if s > last and self.role is Role.LISTENER]:
            self._forget(sid, peer_knows=True)
            events.append(StreamReset(stream_id=sid, error_code=ErrorCode.REFUSED_STREAM,
                                      reason="the peer is closing the connection", remote=True))

    def _on_window(self, sid: int, increment: int, events: list[Event]) -> None:
        if sid == 0:
            if increment == 0:
                raise RemoteProtocolError("connection WINDOW increment of 0")
            if increment < self._small_conn_credit:
                self._spend_small_window()
            if self._conn_send_window + increment > MAX_WINDOW:
                raise RemoteProtocolError("connection window overflow (over 2^31-1)",
                                          ErrorCode.FLOW_CONTROL_ERROR)
            self._conn_send_window += increment
            events.append(WindowUpdated(stream_id=0, increment=increment))
            return
        stream = self._streams.get(sid)
        if stream is None:
            self._on_closed_stream_frame(sid, "WINDOW")
            return
        if increment == 0:
            raise RemoteProtocolError(f"WINDOW increment of 0 on stream {sid}",
                                      ErrorCode.PROTOCOL_ERROR, sid)
        if increment < self._small_stream_credit:
            self._spend_small_window()
        if stream.send_window + increment > MAX_WINDOW:
            raise RemoteProtocolError(f"stream {sid} window overflow (over 2^31-1)",
                                      ErrorCode.FLOW_CONTROL_ERROR, sid)
        stream.send_window += increment
        events.append(WindowUpdated(stream_id=sid, increment=increment))

    def _never_received(self, stream: StreamRecord) -> bool:
        """True when no DATA byte ever arrived on ``stream`` (no per-frame bookkeeping: any
        byte received leaves the receive window short, or counts as consumed or unacked, or
        grew the window)."""
        return (stream.consumed == 0 and stream.unacked == 0 and
                stream.recv_window == stream.window == self.config.initial_stream_window)

    def _spend_small_window(self) -> None:
        budgets = self._budgets
        budgets.small_windows -= 1
        if budgets.small_windows < 0:
            raise budgets.exceeded("small_windows")

    def _on_open(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if self.role is Role.LISTENER:
            raise RemoteProtocolError("the dialer may not open streams")
        if sid % 2 == 0 or sid <= self._last_peer_stream:
            raise RemoteProtocolError(f"OPEN with stream id {sid}: ids must be odd and "
                                      f"increasing (last was {self._last_peer_stream})")
        self._last_peer_stream = sid
        if self.state is ConnectionState.CLOSING:
            self._refuse(sid, ErrorCode.REFUSED_STREAM, "the connection is closing")
            return
        if len(self._streams) >= self.config.max_concurrent_streams:
            self._refused_in_row += 1
            if self._refused_in_row > self.config.max_refused_streams:
                raise RemoteProtocolError(
                    f"{self._refused_in_row} streams opened over the limit of "
                    f"{self.config.max_concurrent_streams}", ErrorCode.ENHANCE_YOUR_CALM)
            self._refuse(sid, ErrorCode.REFUSED_STREAM,
                         f"at most {self.config.max_concurrent_streams} concurrent streams")
            return
        try:
            port_index, metadata = parse_open(payload, self.config.max_metadata)
        except RemoteProtocolError as exc:
            self._refuse(sid, exc.code, exc.reason)
            return
        self._refused_in_row = 0
        self._streams[sid] = StreamRecord(StreamState.PENDING, self._peer_stream_window,
                                     self.config.initial_stream_window)
        events.append(StreamOpened(stream_id=sid, port_index=port_index, metadata=metadata))

    def _refuse(self, sid: int, code: ErrorCode, reason: str) -> None:
        self._out.append(encode_reset(sid, code, reason))
        self._remember_closed(sid, peer_knows=False)

    def _on_stream_input(self, sid: int, event: StreamInput, what: str) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            self._on_closed_stream_frame(sid, what)
            return
        try:
            stream.state = advance(stream.state, event)
        except TransitionError as exc:
            raise RemoteProtocolError(f"{what} on stream {sid}: {exc}",
                                      ErrorCode.PROTOCOL_ERROR, sid) from None

    def _stream_error(self, exc: RemoteProtocolError, events: list[Event]) -> None:
        sid = exc.stream_id
        self._out.append(encode_reset(sid, exc.code, exc.reason))
        if sid in self._streams:
            self._forget(sid, peer_knows=False)
            events.append(StreamReset(stream_id=sid, error_code=exc.code, reason=exc.reason,
                                      remote=False))
