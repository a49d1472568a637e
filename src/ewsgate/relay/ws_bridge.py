"""WebSocket frames between the browser and the device, parsed and re-framed. No I/O.

After both handshakes (:mod:`.ws_handshake`) the relay holds two wsproto frame connections:
it is the *server* to the browser and the *client* to the device. Bytes from one side are
parsed into events; only WebSocket events are re-framed for the other side, so nothing but
WebSocket frames ever passes (a plain HTTP request sent after the ``101`` is a protocol error,
not a request the device sees)::

    browser bytes ─▶ wsproto SERVER ─▶ events ─▶ wsproto CLIENT ─▶ device bytes (masked)
    browser bytes ◀─ wsproto SERVER ◀─ events ◀─ wsproto CLIENT ◀─ device bytes

Rules:

- Text and binary frames are forwarded as they arrive (fragments stay fragments: memory is
  bounded by a read, never by a message). Ping and pong are forwarded end to end.
- A close from one side is forwarded with its code and reason (no status → no status); the
  other side's answering close goes back the same way. The first close decides the logged code.
- A side that breaks the protocol (unmasked client frame, masked server frame, RSV bits, bad
  UTF-8, bad close code, a control frame over 125 bytes, …) is *failed*: it gets a close with
  wsproto's code (1002/1007/…) and is not read any further; the other side gets the same code.
- A side that disconnects without a close is logged as 1006; the other side gets 1001 (going
  away). Before any close that is a failure of that side, kept with its cause
  (:attr:`WebSocketStats.vanished`, :attr:`WebSocketStats.cause`: a device or tunnel stream
  reset, a transport error, or a plain end of the connection) so the log says what happened.
- :meth:`WebSocketBridge.end` (the session ended or was revoked) sends close 1008 (policy
  violation) both ways; data arriving after it is dropped.

:meth:`WebSocketBridge.done` says when both directions are over; the adapter then closes both
transports (after a short grace, for the answering closes).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

__all__ = ["POLICY_VIOLATION", "Side", "WebSocketBridge", "WebSocketStats"]

#: RFC 6455 §7.4.1: the close code sent both ways when the session ends or is revoked
POLICY_VIOLATION = 1008
_GOING_AWAY = 1001
_ABNORMAL = 1006
_NO_STATUS = 1005


class Side(enum.Enum):
    """Which peer of the relay."""

    BROWSER = "browser"
    DEVICE = "device"


@dataclass(slots=True)
class WebSocketStats:
    """What the log says about one WebSocket."""

    #: complete messages and payload bytes, browser → device
    messages_in: int = 0
    bytes_in: int = 0
    #: complete messages and payload bytes, device → browser
    messages_out: int = 0
    bytes_out: int = 0
    #: the first close code seen (1006: a side vanished without one) and who caused it
    close_code: int | None = None
    closed_by: str | None = None
    #: a protocol violation, in words, if one ended the WebSocket
    error: str | None = None
    #: the side whose connection failed (reset, transport error, end without a close) before
    #: any close, and why
    vanished: str | None = None
    cause: str | None = None

    def summary(self) -> str:
        """One line for the log's ``detail``."""
        closed = (f"close {self.close_code} by the {self.closed_by}"
                  if self.close_code is not None else "not closed")
        text = (f"websocket: {closed}; messages {self.messages_in} in, "
                f"{self.messages_out} out")
        if self.vanished is not None:
            text = (f"{text}; the {self.vanished}'s connection failed mid-stream: "
                    f"{self.cause or 'it ended without a close'}")
        return f"{text}; {self.error}" if self.error else text


@dataclass(slots=True)
class _Leg:
    side: Side
    conn: Connection
    out: bytearray = field(default_factory=bytearray)
    #: not to be read any more (it broke the protocol or disconnected)
    finished: bool = False


class WebSocketBridge:
    """Both legs of one proxied WebSocket; feed bytes, take bytes to send."""

    def __init__(self) -> None:
        self._legs = {
            Side.BROWSER: _Leg(Side.BROWSER, Connection(ConnectionType.SERVER)),
            Side.DEVICE: _Leg(Side.DEVICE, Connection(ConnectionType.CLIENT)),
        }
        self.stats = WebSocketStats()
        self.ended = False

    # -- input -----------------------------------------------------------------------------

    def receive(self, side: Side, data: bytes | None, *, cause: str | None = None) -> None:
        """Bytes read from ``side`` (None: it closed its transport; ``cause``: why, if its
        transport failed rather than ended)."""
        leg = self._legs[side]
        if leg.finished:
            return
        if leg.conn.state is ConnectionState.CLOSED:
            # its close handshake is complete; anything after it is not ours to forward
            leg.finished = True
            return
        leg.conn.receive_data(data)
        other = self._legs[Side.DEVICE if side is Side.BROWSER else Side.BROWSER]
        for event in leg.conn.events():
            if leg.finished:
                break
            if isinstance(event, TextMessage | BytesMessage):
                self._forward_data(leg, other, event)
            elif isinstance(event, Ping):
                self._send(other, Ping(payload=bytes(event.payload)))
            elif isinstance(event, Pong):
                self._send(other, Pong(payload=bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                if data is None and self.stats.close_code is None and not self.ended:
                    self.stats.vanished = side.value
                    self.stats.cause = (cause or "it ended the connection without a "
                                        "WebSocket close")[:200]
                self._on_close(leg, other, event, disconnected=data is None)

    def _forward_data(self, leg: _Leg, other: _Leg,
                      event: TextMessage | BytesMessage) -> None:
        size = len(event.data.encode("utf-8")) if isinstance(event, TextMessage) else len(
            event.data)
        if leg.side is Side.BROWSER:
            self.stats.bytes_in += size
            self.stats.messages_in += event.message_finished
        else:
            self.stats.bytes_out += size
            self.stats.messages_out += event.message_finished
        if not self.ended:
            message: Message[str] | Message[bytes | bytearray] = (
                Message(data=event.data, message_finished=event.message_finished)
                if isinstance(event, TextMessage) else
                Message(data=bytes(event.data), message_finished=event.message_finished))
            self._send(other, message)

    def _on_close(self, leg: _Leg, other: _Leg, event: CloseConnection, *,
                  disconnected: bool) -> None:
        failed = not disconnected and leg.conn.state in (
            ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
        if disconnected:
            leg.finished = True
            self._first_close(_ABNORMAL, leg.side)
            self._close(other, _GOING_AWAY, f"the {leg.side.value} went away")
        elif failed:
            # wsproto's parse failure: the peer broke the protocol; fail its leg
            leg.finished = True
            self._first_close(int(event.code), leg.side)
            self.stats.error = self.stats.error or (
                f"the {leg.side.value} broke the WebSocket protocol: {event.reason}")[:300]
            self._close(leg, int(event.code), "protocol error")
            self._close(other, int(event.code), f"the {leg.side.value} broke the protocol")
        else:
            # forwarded: to the other side it is either the first close (it answers, and
            # that answer comes back here) or its answer to one it sent (the handshake ends)
            self._first_close(int(event.code), leg.side)
            self._close(other, int(event.code), event.reason or None)

    def _first_close(self, code: int, side: Side) -> None:
        if self.stats.close_code is None:
            self.stats.close_code = code
            self.stats.closed_by = side.value

    # -- output ----------------------------------------------------------------------------

    def _send(self, leg: _Leg,
              event: Message[bytes | bytearray] | Message[str] | Ping | Pong) -> None:
        if leg.finished or leg.conn.state is not ConnectionState.OPEN:
            return
        leg.out += leg.conn.send(event)

    def _close(self, leg: _Leg, code: int, reason: str | None) -> None:
        if leg.conn.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return
        if code == _NO_STATUS:
            # the peer sent a close without a status: forward one without a status
            close = CloseConnection(code=CloseReason.NO_STATUS_RCVD)
        elif code in (_ABNORMAL, CloseReason.TLS_HANDSHAKE_FAILED):
            close = CloseConnection(code=_GOING_AWAY, reason=reason)
        else:
            close = CloseConnection(code=code, reason=reason)
        try:
            leg.out += leg.conn.send(close)
        except LocalProtocolError:  # its transport is gone (state changed under us)
            return

    def pending(self, side: Side) -> bool:
        """True if there are bytes to write to ``side``."""
        return bool(self._legs[side].out)

    def data_to_send(self, side: Side) -> bytes:
        """Bytes to write to ``side`` now."""
        leg = self._legs[side]
        data = bytes(leg.out)
        leg.out.clear()
        return data

    # -- the session's end -----------------------------------------------------------------

    def end(self, reason: str = "the Remote Technician session ended") -> None:
        """Close both sides with 1008 (the session ended or was revoked)."""
        if self.ended:
            return
        self.ended = True
        if self.stats.close_code is None:
            self.stats.close_code = POLICY_VIOLATION
            self.stats.closed_by = "relay"
        for leg in self._legs.values():
            self._close(leg, POLICY_VIOLATION, reason)

    # -- state -----------------------------------------------------------------------------

    def reading(self, side: Side) -> bool:
        """True while bytes from ``side`` are still wanted."""
        leg = self._legs[side]
        return not leg.finished and leg.conn.state is not ConnectionState.CLOSED

    def done(self) -> bool:
        """Both legs closed (handshake complete) or given up."""
        return all(leg.finished or leg.conn.state is ConnectionState.CLOSED
                   for leg in self._legs.values())

