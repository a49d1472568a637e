"""One end of a tunnel connection: bytes in, events out, bytes to send.

:class:`Connection` holds every stream's state, both flow-control windows and the keepalive
timer. It never touches a socket or a clock: the adapter feeds received bytes to
:meth:`Connection.receive_data`, acts on the returned events, calls the ``send_*`` methods, and
writes :meth:`Connection.data_to_send` to the transport. Time enters only through
:meth:`Connection.tick`, so dead-peer detection is tested with plain numbers.

Flow control, per stream and per connection (both in bytes of DATA payload):

* The sender may have at most ``window`` unacknowledged bytes in flight. The receiver returns
  stream credit (a WINDOW frame) only when its application *consumed* the bytes
  (:meth:`Connection.acknowledge_received`), so a slow reader holds at most one stream window
  in memory and never stalls other streams. Connection credit is returned as soon as frames
  arrive: the connection window only caps bytes in flight, it cannot be pinned by one stream.
* Credit is returned in batches (a quarter window) to keep WINDOW frames rare.
* A stream whose reader keeps up but whose sender keeps running out of credit gets a larger
  window (doubling, up to ``max_stream_window``), from a per-connection growth budget
  (``window_growth_budget``). A slow reader never returns credit, so it never grows. Memory a
  peer can make us hold: ``max_concurrent_streams * initial_stream_window + budget``.

Errors: a frame that breaks the rules of one stream resets that stream (a RESET frame out, a
:class:`StreamReset` event in); anything else closes the connection (GOAWAY with the code, then
:class:`ConnectionTerminated`). :meth:`receive_data` never raises for any input.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict

from ewsgate.tunnel.config import MAX_WINDOW, ProtocolConfig, Role
from ewsgate.tunnel.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
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
    encode_goaway,
    encode_hello,
    encode_open,
    encode_reset,
    parse_goaway,
    parse_hello,
    parse_open,
    parse_reset,
)
from ewsgate.tunnel.state import ConnectionState, StreamInput, StreamState, TransitionError, advance

__all__ = ["Connection"]

_U32 = struct.Struct("!I")
_DATA = int(FrameType.DATA)  # plain ints: enum operators are Python-level calls
_END = int(Flag.END_STREAM)
_CLOSED_MEMORY = 4096  # how many closed stream ids we remember (to tell late frames apart)
_RECEIVING = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)
_SENDING = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
_MERGE_BELOW = 16 * 1024  # queued items smaller than this are joined into one write


class _Stream:
    __slots__ = ("recv_window", "send_window", "state", "unacked", "window")

    def __init__(self, state: StreamState, send_window: int, recv_window: int) -> None:
        self.state = state
        self.send_window = send_window
        self.recv_window = recv_window
        #: the receive window this stream is granted now (grows for fast readers)
        self.window = recv_window
        self.unacked = 0


class Connection:
    """The sans-I/O tunnel protocol for one end (``role``) of one connection."""

    def __init__(self, role: Role, config: ProtocolConfig | None = None,
                 credential: bytes = b"") -> None:
        self.role = role
        self.config = config or ProtocolConfig()
        self.state = ConnectionState.HANDSHAKE
        self._parser = FrameParser(self.config.max_frame_size)
        self._out: list[bytes] = []
        self._streams: dict[int, _Stream] = {}
        #: closed stream id -> True when the peer knows it is closed (its RESET or FIN)
        self._closed: OrderedDict[int, bool] = OrderedDict()
        self._next_stream_id = 1
        self._last_peer_stream = 0
        self._peer_opened_count = 0
        self._refused_in_row = 0
        # peer limits, known after its HELLO
        self._peer_stream_window = 0
        self._peer_max_frame = 16 * 1024
        self._peer_max_streams = 0
        self._peer_max_metadata = 0
        self._conn_send_window = 0
        self._conn_recv_window = self.config.connection_window
        self._conn_unacked = 0
        self._hello_received = False
        self._goaway_sent = False
        self._goaway_received = False
        self._data_skip = False
        #: receive window granted beyond the initial windows, summed over open streams
        self._window_growth = 0
        # keepalive
        self._activity = False
        self._last_seen: float | None = None
        self._ping_sent_at: float | None = None
        self._ping_payload = b""
        self._pings_answered = 0  # since the last tick (a PING flood is refused)
        if role is Role.DIALER:
            self._out.append(encode_hello(self.config.settings(), credential))

    # ------------------------------------------------------------------ inspection

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def stream_state(self, stream_id: int) -> StreamState:
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream.state
        return StreamState.CLOSED if stream_id in self._closed or (
            0 < stream_id < self._next_stream_id or stream_id <= self._last_peer_stream
        ) else StreamState.IDLE

    def send_capacity(self, stream_id: int) -> int:
        """How many DATA bytes :meth:`send_data` accepts on ``stream_id`` right now."""
        stream = self._streams.get(stream_id)
        if stream is None or self.state is ConnectionState.CLOSED or \
                stream.state not in _SENDING:
            return 0
        return max(0, min(stream.send_window, self._conn_send_window))

    def can_send(self, stream_id: int) -> bool:
        """True once the stream is accepted and we have not sent our FIN (nor reset it)."""
        stream = self._streams.get(stream_id)
        return stream is not None and stream.state in _SENDING

    @property
    def max_outbound_frame(self) -> int:
        return self._peer_max_frame

    @property
    def can_open_stream(self) -> bool:
        return (self.role is Role.LISTENER and self.state is ConnectionState.OPEN
                and len(self._streams) < self._peer_max_streams)

    @property
    def window_growth(self) -> int:
        """Receive window granted beyond the initial stream windows (bounded by the budget)."""
        return self._window_growth

    @property
    def buffered_inbound(self) -> int:
        """Bytes received but not parsed yet (at most one frame)."""
        return self._parser.buffered

    @property
    def has_output(self) -> bool:
        """True when :meth:`data_to_send` has something."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Everything queued for the peer, in order; empties the queue."""
        if not self._out:
            return b""
        out = self._out
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def data_to_send_parts(self) -> list[bytes]:
        """Like :meth:`data_to_send`, as a list for ``writelines``: small items are merged,
        large payloads are passed on as they are (no copy)."""
        out = self._out
        if len(out) <= 1:
            self._out = []
            return out
        self._out = []
        parts: list[bytes] = []
        small: list[bytes] = []
        for item in out:
            if len(item) < _MERGE_BELOW:
                small.append(item)
                continue
            if small:
                parts.append(b"".join(small) if len(small) > 1 else small[0])
                small = []
            parts.append(item)
        if small:
            parts.append(b"".join(small) if len(small) > 1 else small[0])
        return parts

    # ------------------------------------------------------------------ handshake

    def accept_peer(self) -> None:
        """Listener: the dialer's HELLO (its ticket) was verified; answer with our HELLO."""
        if self.role is not Role.LISTENER or not self._hello_received:
            raise LocalProtocolError("accept_peer() is for a listener that received a HELLO")
        if self.state is not ConnectionState.HANDSHAKE:
            raise LocalProtocolError(f"accept_peer() in state {self.state.name}")
        self._out.append(encode_hello(self.config.settings(), b""))
        self.state = ConnectionState.OPEN

    def refuse_peer(self, code: ErrorCode, reason: str) -> None:
        """Listener: refuse the dialer (bad ticket, ...) with a GOAWAY saying why."""
        self._terminate_local(code, reason)

    # ------------------------------------------------------------------ streams, sending

    def open_stream(self, port_index: int, metadata: bytes = b"") -> int:
        """Open a stream to the device port ``port_index``; returns the new stream id."""
        if self.role is not Role.LISTENER:
            raise LocalProtocolError("only the listener (relay) opens streams")
        self._require_open()
        if self.state is ConnectionState.CLOSING:
            raise LocalProtocolError("the connection is closing (GOAWAY): no new streams",
                                     ErrorCode.REFUSED_STREAM)
        if len(self._streams) >= self._peer_max_streams:
            raise LocalProtocolError(
                f"the peer allows {self._peer_max_streams} concurrent streams",
                ErrorCode.REFUSED_STREAM)
        if not 0 <= port_index <= 0xFFFF:
            raise LocalProtocolError(f"port index {port_index} does not fit in 16 bits")
        if len(metadata) > self._peer_max_metadata:
            raise LocalProtocolError(
                f"metadata of {len(metadata)} bytes; the peer accepts {self._peer_max_metadata}",
                ErrorCode.METADATA_TOO_LARGE)
        stream_id = self._next_stream_id
        if stream_id > MAX_WINDOW:
            raise LocalProtocolError("stream ids exhausted; open a new connection",
                                     ErrorCode.REFUSED_STREAM)
        self._next_stream_id += 2
        self._streams[stream_id] = _Stream(StreamState.OPENING, self._peer_stream_window,
                                           self.config.initial_stream_window)
        self._out.append(encode_open(stream_id, port_index, metadata))
        return stream_id

    def accept_stream(self, stream_id: int) -> None:
        """Dialer: the device connection is up; let data flow."""
        stream = self._local_transition(stream_id, StreamInput.SEND_ACCEPT)
        del stream
        self._out.append(encode_frame(FrameType.ACCEPT, 0, stream_id))

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview,
                  end_stream: bool = False) -> None:
        """Queue ``data`` (at most :meth:`send_capacity` bytes), split into frames."""
        self._require_open()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is not open", ErrorCode.STREAM_CLOSED)
        if stream.state is not StreamState.OPEN and stream.state is not \
                StreamState.HALF_CLOSED_REMOTE:
            raise LocalProtocolError(f"cannot send data on stream {stream_id}: it is "
                                     f"{stream.state.name.lower()}", ErrorCode.STREAM_CLOSED)
        size = len(data)
        if size > stream.send_window or size > self._conn_send_window:
            raise LocalProtocolError(
                f"{size} bytes exceed the send window ({self.send_capacity(stream_id)} free)",
                ErrorCode.FLOW_CONTROL_ERROR)
        stream.send_window -= size
        self._conn_send_window -= size
        out = self._out
        limit = self._peer_max_frame
        if size <= limit:
            out.append(HEADER.pack(size, _DATA, _END if end_stream else 0, stream_id))
            if size:
                out.append(bytes(data) if not isinstance(data, bytes) else data)
        else:
            view = memoryview(data)
            for start in range(0, size, limit):
                chunk = view[start:start + limit]
                last = start + limit >= size
                out.append(HEADER.pack(len(chunk), _DATA, _END if last and end_stream else 0,
                                       stream_id))
                out.append(bytes(chunk))
        if end_stream:
            self._after_local_fin(stream_id, stream)

    def end_stream(self, stream_id: int) -> None:
        """Half-close: we send no more data on ``stream_id``."""
        self._require_open()
        stream = self._local_transition(stream_id, StreamInput.SEND_FIN, check_only=True)
        self._out.append(HEADER.pack(0, _DATA, _END, stream_id))
        self._after_local_fin(stream_id, stream)

    def _after_local_fin(self, stream_id: int, stream: _Stream) -> None:
        stream.state = advance(stream.state, StreamInput.SEND_FIN)
        if stream.state is StreamState.CLOSED:
            self._forget(stream_id, peer_knows=True)

    def reset_stream(self, stream_id: int, code: ErrorCode = ErrorCode.CANCEL,
                     reason: str = "") -> None:
        """Abort ``stream_id`` both ways with ``code``. Resetting a closed stream is a no-op."""
        if self.state is ConnectionState.CLOSED:
            return
        if stream_id not in self._streams:
            return
        self._out.append(encode_reset(stream_id, code, reason))
        self._forget(stream_id, peer_knows=False)

    def acknowledge_received(self, stream_id: int, size: int) -> None:
        """The application consumed ``size`` bytes of ``stream_id``: return the credit."""
        stream = self._streams.get(stream_id)
        if stream is None or size <= 0 or self.state is ConnectionState.CLOSED:
            return
        stream.unacked += size
        if stream.unacked >= stream.window // 4 and stream.state in _RECEIVING:
            increment = stream.unacked
            # The reader keeps up but the sender ran (nearly) out of credit: the window, not
            # the reader, limits this stream. Grow it, within the per-stream maximum and the
            # connection's growth budget, so memory stays bounded whatever the readers do.
            if stream.recv_window < stream.window // 4 and \
                    stream.window < self.config.max_stream_window:
                growth = min(stream.window, self.config.max_stream_window - stream.window,
                             self.config.window_growth_budget - self._window_growth)
                if growth > 0:
                    stream.window += growth
                    self._window_growth += growth
                    increment += growth
            stream.recv_window += increment
            self._out.append(HEADER.pack(4, FrameType.WINDOW, 0, stream_id))
            self._out.append(_U32.pack(increment))
            stream.unacked = 0

    def send_ping(self, payload: bytes | None = None) -> bytes:
        """Send a PING; :class:`PingAcknowledged` reports the answer. Returns the payload."""
        self._require_open()
        payload = payload if payload is not None else os.urandom(8)
        if len(payload) != 8:
            raise LocalProtocolError("a ping payload is 8 bytes")
        self._out.append(encode_frame(FrameType.PING, 0, 0, payload))
        return payload

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """GOAWAY. NO_ERROR: no new streams, open ones finish. Any other code: close at once."""
        if self.state is ConnectionState.CLOSED:
            return
        if code is not ErrorCode.NO_ERROR or self.state is ConnectionState.HANDSHAKE:
            self._terminate_local(code, reason)
            return
        if not self._goaway_sent:
            self._goaway_sent = True
            self._out.append(encode_goaway(self._last_peer_stream, code, reason))
        self.state = ConnectionState.CLOSING

    @property
    def is_drained(self) -> bool:
        """True once closing (or closed) with no stream left: the transport may be closed."""
        return self.state is ConnectionState.CLOSED or (
            self.state is ConnectionState.CLOSING and not self._streams)

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[Event]:
        """Advance the keepalive timer to ``now`` (monotonic seconds); may queue a PING."""
        if self.state is not ConnectionState.OPEN and self.state is not ConnectionState.CLOSING:
            return []
        self._pings_answered = 0
        if self._activity or self._last_seen is None:
            self._activity = False
            self._last_seen = now
            self._ping_sent_at = None
            return []
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at >= self.config.keepalive_timeout:
                reason = (f"the peer answered no ping for {now - self._ping_sent_at:.1f}s; "
                          "it is gone or the network dropped the connection")
                self._terminate_local(ErrorCode.KEEPALIVE_TIMEOUT, reason)
                return [ConnectionTerminated(error_code=ErrorCode.KEEPALIVE_TIMEOUT,
                                             reason=reason, remote=False)]
        elif now - self._last_seen >= self.config.keepalive_interval:
            self._ping_payload = os.urandom(8)
            self._out.append(encode_frame(FrameType.PING, 0, 0, self._ping_payload))
            self._ping_sent_at = now
        return []

    # ------------------------------------------------------------------ receiving

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
                        self._on_control(frame, events)
                except RemoteProtocolError as exc:
                    if not exc.stream_id:
                        raise
                    self._stream_error(exc, events)
                if self._is_closed():
                    break
        except RemoteProtocolError as exc:
            self._terminate_local(exc.code, exc.reason)
            events.append(ConnectionTerminated(error_code=exc.code, reason=exc.reason,
                                               remote=False))
        except (ValueError, TransitionError) as exc:  # defensive: a bug must not leak state
            self._terminate_local(ErrorCode.INTERNAL_ERROR, str(exc))
            events.append(ConnectionTerminated(error_code=ErrorCode.INTERNAL_ERROR,
                                               reason=str(exc), remote=False))

    def _on_data(self, frame: Frame, events: list[Event]) -> None:
        sid = frame.stream_id
        if frame.first:
            self._data_skip = True  # until the checks below pass, the frame's pieces are dropped
            self._require_established()
            if sid == 0:
                raise RemoteProtocolError("DATA on stream 0")
            size = frame.length
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
            events.append(DataReceived(stream_id=sid, data=frame.payload, end_stream=end))
        if end:
            stream.state = advance(stream.state, StreamInput.RECV_FIN)
            events.append(StreamEnded(stream_id=sid))
            if stream.state is StreamState.CLOSED:
                self._forget(sid, peer_knows=True)

    def _on_closed_stream_frame(self, sid: int, what: str) -> None:
        """A frame for a stream we no longer track: late (ignore) or a peer error."""
        if self._is_unknown(sid):
            raise RemoteProtocolError(f"{what} for stream {sid}, which was never opened")
        if what == "DATA" and self._closed.get(sid):
            # the peer itself reset or finished this stream, yet still sends on it
            self._out.append(encode_reset(sid, ErrorCode.STREAM_CLOSED,
                                          f"DATA on stream {sid} after it was closed"))

    def _is_unknown(self, sid: int) -> bool:
        if self.role is Role.LISTENER:
            return sid >= self._next_stream_id or sid % 2 == 0
        return sid > self._last_peer_stream

    def _on_control(self, frame: Frame, events: list[Event]) -> None:
        ftype, sid, payload = frame.type, frame.stream_id, frame.payload
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
            if sid in self._streams:
                self._forget(sid, peer_knows=True)
                events.append(StreamReset(stream_id=sid, error_code=ErrorCode.from_wire(code),
                                          reason=reason, remote=True))
            elif self._is_unknown(sid):
                raise RemoteProtocolError(f"RESET for stream {sid}, which was never opened")
        else:
            raise RemoteProtocolError(f"unknown frame type {ftype}")

    def _on_hello(self, frame: Frame, events: list[Event]) -> None:
        if self._hello_received or frame.stream_id != 0:
            raise RemoteProtocolError("a second HELLO, or HELLO on a stream")
        version, settings, credential = parse_hello(frame.payload)
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
        self._hello_received = True
        if self.role is Role.DIALER:
            self.state = ConnectionState.OPEN
        events.append(HelloReceived(version=version, settings=settings, credential=credential))

    def _on_goaway(self, frame: Frame, events: list[Event]) -> None:
        if frame.stream_id != 0:
            raise RemoteProtocolError("GOAWAY on a stream")
        last, code, reason = parse_goaway(frame.payload)
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
        if stream.send_window + increment > MAX_WINDOW:
            raise RemoteProtocolError(f"stream {sid} window overflow (over 2^31-1)",
                                      ErrorCode.FLOW_CONTROL_ERROR, sid)
        stream.send_window += increment
        events.append(WindowUpdated(stream_id=sid, increment=increment))

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
        self._streams[sid] = _Stream(StreamState.PENDING, self._peer_stream_window,
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

    # ------------------------------------------------------------------ helpers

    def _is_closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    def _require_open(self) -> None:
        if self.state is ConnectionState.CLOSED:
            raise LocalProtocolError("the connection is closed", ErrorCode.STREAM_CLOSED)
        if self.state is ConnectionState.HANDSHAKE:
            raise LocalProtocolError("the handshake is not complete")

    def _require_established(self) -> None:
        if self.state is ConnectionState.HANDSHAKE:
            raise RemoteProtocolError("a frame other than HELLO/GOAWAY before the handshake")

    def _local_transition(self, stream_id: int, event: StreamInput,
                          check_only: bool = False) -> _Stream:
        self._require_open()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is not open", ErrorCode.STREAM_CLOSED)
        try:
            new_state = advance(stream.state, event)
        except TransitionError as exc:
            raise LocalProtocolError(str(exc), ErrorCode.STREAM_CLOSED) from None
        if not check_only:
            stream.state = new_state
        return stream

    def _forget(self, sid: int, *, peer_knows: bool) -> None:
        stream = self._streams.pop(sid, None)
        if stream is not None:
            self._window_growth -= stream.window - self.config.initial_stream_window
        self._remember_closed(sid, peer_knows=peer_knows)

    def _remember_closed(self, sid: int, *, peer_knows: bool) -> None:
        self._closed[sid] = peer_knows
        if len(self._closed) > _CLOSED_MEMORY:
            self._closed.popitem(last=False)

    def _terminate_local(self, code: ErrorCode, reason: str) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        self._out.append(encode_goaway(self._last_peer_stream, code, reason))
        self._goaway_sent = True
        self._streams.clear()
        self._window_growth = 0
        self.state = ConnectionState.CLOSED
