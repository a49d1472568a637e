"""The stream and connection state machines, as tables.

Rules (one stream, seen from one end)::

    IDLE --send OPEN--> OPENING --recv ACCEPT--> OPEN
    IDLE --recv OPEN--> PENDING --send ACCEPT--> OPEN
    OPEN --send FIN--> HALF_CLOSED_LOCAL  --recv FIN--> CLOSED
    OPEN --recv FIN--> HALF_CLOSED_REMOTE --send FIN--> CLOSED
    any state but CLOSED --send/recv RESET--> CLOSED

* No DATA before ACCEPT, in either direction: the opener learns that the agent reached the
  device before it sends a byte, and a refused destination never receives one.
* DATA may be sent only in OPEN and HALF_CLOSED_REMOTE, received only in OPEN and
  HALF_CLOSED_LOCAL. FIN travels as the END_STREAM flag of a DATA frame.
* WINDOW frames do not change state; they are allowed in every state but IDLE and CLOSED.
* Anything not in the table is an error: :func:`advance` raises, and the caller decides whose
  fault it was (``send_*`` -> LocalProtocolError, ``receive_data`` -> a stream reset).

Connection::

    HANDSHAKE --HELLO both ways--> OPEN --GOAWAY sent or received--> CLOSING --> CLOSED
    any --protocol error, keepalive timeout, error GOAWAY--> CLOSED
"""

from __future__ import annotations

from enum import Enum, auto

__all__ = ["ConnectionState", "StreamInput", "StreamState", "TransitionError", "advance"]


class StreamState(Enum):
    IDLE = auto()
    OPENING = auto()  #: we sent OPEN, waiting for ACCEPT
    PENDING = auto()  #: we received OPEN, not accepted yet
    OPEN = auto()
    HALF_CLOSED_LOCAL = auto()  #: we sent FIN
    HALF_CLOSED_REMOTE = auto()  #: the peer sent FIN
    CLOSED = auto()


class StreamInput(Enum):
    SEND_OPEN = auto()
    RECV_OPEN = auto()
    SEND_ACCEPT = auto()
    RECV_ACCEPT = auto()
    SEND_DATA = auto()
    RECV_DATA = auto()
    SEND_FIN = auto()
    RECV_FIN = auto()
    SEND_RESET = auto()
    RECV_RESET = auto()


class ConnectionState(Enum):
    HANDSHAKE = auto()
    OPEN = auto()
    CLOSING = auto()  #: a GOAWAY went one way or the other: no new streams
    CLOSED = auto()


S = StreamState
I = StreamInput  # noqa: E741 -- a one-letter alias keeps the table readable

_RESETS = {I.SEND_RESET: S.CLOSED, I.RECV_RESET: S.CLOSED}

#: (state, input) -> next state; everything absent is forbidden
STREAM_TRANSITIONS: dict[StreamState, dict[StreamInput, StreamState]] = {
    S.IDLE: {I.SEND_OPEN: S.OPENING, I.RECV_OPEN: S.PENDING},
    S.OPENING: {I.RECV_ACCEPT: S.OPEN, **_RESETS},
    S.PENDING: {I.SEND_ACCEPT: S.OPEN, **_RESETS},
    S.OPEN: {
        I.SEND_DATA: S.OPEN,
        I.RECV_DATA: S.OPEN,
        I.SEND_FIN: S.HALF_CLOSED_LOCAL,
        I.RECV_FIN: S.HALF_CLOSED_REMOTE,
        **_RESETS,
    },
    S.HALF_CLOSED_LOCAL: {I.RECV_DATA: S.HALF_CLOSED_LOCAL, I.RECV_FIN: S.CLOSED, **_RESETS},
    S.HALF_CLOSED_REMOTE: {I.SEND_DATA: S.HALF_CLOSED_REMOTE, I.SEND_FIN: S.CLOSED, **_RESETS},
    S.CLOSED: {},
}


class TransitionError(Exception):
    """``input`` is not allowed in ``state``."""

    def __init__(self, state: StreamState, event: StreamInput) -> None:
        super().__init__(f"{event.name.lower().replace('_', ' ')} is not allowed when the "
                         f"stream is {state.name.lower().replace('_', ' ')}")
        self.state = state
        self.event = event


def advance(state: StreamState, event: StreamInput) -> StreamState:
    """The state after ``event``; raises :class:`TransitionError` if the table forbids it."""
    try:
        return STREAM_TRANSITIONS[state][event]
    except KeyError:
        raise TransitionError(state, event) from None
