"""State shared by the two halves of a tunnel connection end, and the helpers both use.

:class:`ConnectionBase` holds what one end knows: its role and limits, the stream table
(:class:`StreamRecord` per open stream: state, send and receive windows), the closed-stream
memory, both connection windows, the peer's settings and the keepalive timer. The receive path
(:mod:`.receiving`) and the public API (:mod:`.connection`) build on it.
"""

from __future__ import annotations

from collections import OrderedDict

from ewsgate.tunnel.budgets import Budgets
from ewsgate.tunnel.config import ProtocolConfig, Role
from ewsgate.tunnel.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ewsgate.tunnel.frames import (
    FrameParser,
    encode_goaway,
    encode_hello,
)
from ewsgate.tunnel.state import ConnectionState, StreamInput, StreamState, TransitionError, advance

__all__ = ["ConnectionBase", "StreamRecord"]

_CLOSED_MEMORY = 4096  # how many closed stream ids we remember (to tell late frames apart)
_SENDING = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
_MERGE_BELOW = 16 * 1024  # queued items smaller than this are joined into one write


class StreamRecord:
    """One open stream as this end tracks it."""

    __slots__ = ("consumed", "recv_window", "send_window", "state", "unacked", "window")

    def __init__(self, state: StreamState, send_window: int, recv_window: int) -> None:
        self.state = state
        self.send_window = send_window
        self.recv_window = recv_window
        #: the receive window this stream is granted now (grows for fast readers)
        self.window = recv_window
        self.unacked = 0
        #: bytes the reader consumed since the window last grew (or since the stream opened)
        self.consumed = 0


class ConnectionBase:
    """The state of one end (``role``) of one tunnel connection."""

    def __init__(self, role: Role, config: ProtocolConfig | None = None,
                 credential: bytes = b"") -> None:
        self.role = role
        self.config = config or ProtocolConfig()
        self.state = ConnectionState.HANDSHAKE
        self._parser = FrameParser(self.config.max_frame_size)
        self._out: list[bytes | memoryview] = []
        self._streams: dict[int, StreamRecord] = {}
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
        #: DATA pieces of stream ``_data_sid`` not yet delivered (empty between receive_data calls)
        self._data_parts: list[bytes | memoryview] = []
        self._data_sid = 0
        #: receive window granted beyond the initial windows, summed over open streams
        self._window_growth = 0
        # keepalive
        self._activity = False
        self._last_seen: float | None = None
        self._ping_sent_at: float | None = None
        self._ping_payload = b""
        self._pings_answered = 0  # since the last tick (a PING flood is refused)
        # abuse budgets (refilled by tick) and the credit below which a WINDOW counts as small
        self._budgets = Budgets(self.config.budgets())
        self._small_stream_credit = 0
        self._small_conn_credit = 0
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

    def budget_left(self, budget: str) -> int:
        """What is left of an abuse budget (:data:`ewsgate.tunnel.budgets.BUDGET_NAMES`)."""
        return self._budgets.remaining(budget)

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
        return bytes(out[0]) if len(out) == 1 else b"".join(out)

    def data_to_send_parts(self) -> list[bytes | memoryview]:
        """Like :meth:`data_to_send`, as a list for ``writelines``: small items are merged,
        large payloads are passed on as they are (no copy; a read-only memoryview at most)."""
        out = self._out
        if len(out) <= 1:
            self._out = []
            return out
        self._out = []
        parts: list[bytes | memoryview] = []
        small: list[bytes | memoryview] = []
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
                          check_only: bool = False) -> StreamRecord:
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
