"""Events: what :meth:`TunnelProtocol.receive_data` and :meth:`TunnelProtocol.tick` report.

Each event is a small frozen, keyword-only dataclass named as a fact that has happened on the
connection. Constructors validate their fields so that an impossible event cannot exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from ewsgate.tunnel.errors import ErrorCode

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "GoawayReceived",
    "HelloReceived",
    "PingAcknowledged",
    "StreamAccepted",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "WindowUpdated",
]

_MAX_ID = 2**31 - 1


def _check_stream_id(stream_id: int, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not low <= stream_id <= _MAX_ID:
        raise ValueError(f"stream id {stream_id} out of range {low}..{_MAX_ID}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base class of every tunnel event."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HelloReceived(Event):
    """The peer's HELLO arrived: its protocol version, settings and credential (the ticket)."""

    version: int
    #: the peer's settings by numeric id (see :class:`ewsgate.tunnel.frames.Setting`)
    settings: dict[int, int]
    #: the dialer's credential (the tunnel ticket, UTF-8); empty from the listener
    credential: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.version <= 0xFFFF:
            raise ValueError("version must fit in 16 bits")


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamOpened(Event):
    """The peer opened a stream to the device port at ``port_index``; accept or reset it."""

    stream_id: int
    #: index into the device's configured endpoint list (never a host or a port number)
    port_index: int
    #: opaque bytes from the opener, e.g. a request id for the log (bounded by MAX_METADATA)
    metadata: bytes

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)
        if not 0 <= self.port_index <= 0xFFFF:
            raise ValueError("port_index must fit in 16 bits")


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamAccepted(Event):
    """The peer accepted a stream we opened: data may flow both ways."""

    stream_id: int

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class DataReceived(Event):
    """Bytes arrived on a stream. Call ``acknowledge_received`` once they are consumed."""

    stream_id: int
    data: bytes
    #: the peer also half-closed the stream with this frame
    end_stream: bool = False

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamEnded(Event):
    """The peer half-closed the stream: it will send no more data (we still may)."""

    stream_id: int

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamReset(Event):
    """A stream ended abnormally; ``remote`` says whether the peer reset it or we did."""

    stream_id: int
    error_code: ErrorCode | int
    reason: str = ""
    remote: bool = True

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowUpdated(Event):
    """The peer granted more send window on ``stream_id`` (0: the whole connection)."""

    stream_id: int
    increment: int

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id, allow_zero=True)
        if self.increment <= 0:
            raise ValueError("a window increment is positive")


@dataclass(frozen=True, kw_only=True, slots=True)
class PingAcknowledged(Event):
    """The peer answered one of our pings (``payload`` is the 8 bytes we sent)."""

    payload: bytes

    def __post_init__(self) -> None:
        if len(self.payload) != 8:
            raise ValueError("a ping payload is 8 bytes")


@dataclass(frozen=True, kw_only=True, slots=True)
class GoawayReceived(Event):
    """The peer will accept no new streams; streams up to ``last_stream_id`` may finish."""

    last_stream_id: int
    error_code: ErrorCode | int
    reason: str = ""

    def __post_init__(self) -> None:
        _check_stream_id(self.last_stream_id, allow_zero=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionTerminated(Event):
    """The connection is over: no more frames either way. Close the transport."""

    error_code: ErrorCode | int
    reason: str = ""
    #: True when the peer ended it (its GOAWAY), False when we did (protocol error, timeout)
    remote: bool = False
    #: the abuse budget the peer exhausted (``error_code`` ENHANCE_YOUR_CALM), else ""
    budget: str = ""
