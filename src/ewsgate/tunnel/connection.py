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
* A stream whose reader keeps up (it consumed a whole window since the window last grew, or
  a batch that left the sender nearly without credit) gets a larger window (doubling, up to
  ``max_stream_window``), from a per-connection growth budget (``window_growth_budget``). A
  slow reader never returns credit, so it never grows. Memory a peer can make us hold:
  ``max_concurrent_streams * initial_stream_window + budget``.

Errors: a frame that breaks the rules of one stream resets that stream (a RESET frame out, a
:class:`StreamReset` event in); anything else closes the connection (GOAWAY with the code, then
:class:`ConnectionTerminated`). :meth:`receive_data` never raises for any input.
"""

from __future__ import annotations

import os
import struct
from typing import TypeGuard

from ewsgate.tunnel.base import StreamRecord
from ewsgate.tunnel.config import MAX_WINDOW, Role
from ewsgate.tunnel.errors import ErrorCode, LocalProtocolError
from ewsgate.tunnel.events import (
    ConnectionTerminated,
    Event,
)
from ewsgate.tunnel.frames import (
    HEADER,
    Flag,
    FrameType,
    encode_frame,
    encode_goaway,
    encode_hello,
    encode_open,
    encode_reset,
)
from ewsgate.tunnel.receiving import Receiving
from ewsgate.tunnel.state import ConnectionState, StreamInput, StreamState, advance

__all__ = ["Connection"]

_U32 = struct.Struct("!I")
_DATA = int(FrameType.DATA)  # plain ints: enum operators are Python-level calls
_END = int(Flag.END_STREAM)
_RECEIVING = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)


def _immutable(data: bytes | bytearray | memoryview) -> TypeGuard[bytes | memoryview]:
    """True when nobody can change ``data`` after we queued it (no copy needed)."""
    return isinstance(data, bytes) or (isinstance(data, memoryview) and data.readonly)


class Connection(Receiving):
    """The sans-I/O tunnel protocol for one end (``role``) of one connection."""

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
        self._streams[stream_id] = StreamRecord(StreamState.OPENING, self._peer_stream_window,
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
        """Queue ``data`` (at most :meth:`send_capacity` bytes), split into frames.

        ``bytes`` and read-only memoryviews (slices of ``bytes``: how an adapter splits a
        chunk at the window edge) are queued as they are; a writable buffer is copied, since
        its owner may change it before :meth:`data_to_send` hands it out.
        """
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
                out.append(data if _immutable(data) else bytes(data))
        else:
            view = memoryview(data)
            keep = _immutable(data)
            for start in range(0, size, limit):
                chunk = view[start:start + limit]
                last = start + limit >= size
                out.append(HEADER.pack(len(chunk), _DATA, _END if last and end_stream else 0,
                                       stream_id))
                out.append(chunk if keep else bytes(chunk))
        if end_stream:
            self._after_local_fin(stream_id, stream)

    def end_stream(self, stream_id: int) -> None:
        """Half-close: we send no more data on ``stream_id``."""
        self._require_open()
        stream = self._local_transition(stream_id, StreamInput.SEND_FIN, check_only=True)
        self._out.append(HEADER.pack(0, _DATA, _END, stream_id))
        self._after_local_fin(stream_id, stream)

    def _after_local_fin(self, stream_id: int, stream: StreamRecord) -> None:
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
        stream.consumed += size
        if stream.unacked >= stream.window // 4 and stream.state in _RECEIVING:
            increment = stream.unacked
            # The reader keeps up: it consumed a whole window since the window last grew, or
            # a batch that left the sender (nearly) without credit. Then the window, not the
            # reader, limits the stream: a receiver that consumes at once sees at most a
            # quarter window unacknowledged, yet the sender stalls whenever the credit takes
            # longer to come back than the window lasts (a busy host, a long link). Grow it,
            # within the per-stream maximum and the connection's growth budget, so memory
            # stays bounded whatever the readers do.
            if (stream.consumed >= stream.window or stream.recv_window < stream.window // 4) \
                    and stream.window < self.config.max_stream_window:
                growth = min(stream.window, self.config.max_stream_window - stream.window,
                             self.config.window_growth_budget - self._window_growth)
                stream.consumed = 0
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
        """Advance the keepalive timer to ``now`` (monotonic seconds); may queue a PING.

        Also refills the abuse budgets (:mod:`ewsgate.tunnel.budgets`) by the time passed."""
        if self.state is not ConnectionState.OPEN and self.state is not ConnectionState.CLOSING:
            return []
        self._pings_answered = 0
        self._budgets.refill(now)
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
