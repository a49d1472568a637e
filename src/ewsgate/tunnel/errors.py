"""Error codes of the tunnel protocol and the two exceptions that carry them.

Every failure the tunnel can report has a stable numeric :class:`ErrorCode`; the same numbers go
on the wire in RESET and GOAWAY frames (see ``docs/tunnel-protocol.md``). Exceptions say whose
fault it was, the way h11 and h2 do:

* :class:`LocalProtocolError` -- *our* code asked for something the protocol forbids (sending on
  a closed stream, more than the peer's window, a frame after GOAWAY). It is raised by the
  ``send_*`` methods and means a bug above the core.
* :class:`RemoteProtocolError` -- the *peer* broke the protocol. The core never lets it escape
  :meth:`~ewsgate.tunnel.connection.TunnelProtocol.receive_data`: a connection error becomes a
  GOAWAY plus a :class:`~ewsgate.tunnel.events.ConnectionTerminated` event, a stream error
  becomes a RESET plus a :class:`~ewsgate.tunnel.events.StreamReset` event.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ErrorCode", "LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ErrorCode(IntEnum):
    """Why a stream was reset or a connection closed (u32 on the wire)."""

    NO_ERROR = 0  #: graceful close
    PROTOCOL_ERROR = 1  #: malformed frame or frame not allowed in this state
    INTERNAL_ERROR = 2  #: a bug or unexpected failure on the sender's side
    FLOW_CONTROL_ERROR = 3  #: more data than the window allowed, or a window overflow
    STREAM_CLOSED = 4  #: a frame for a stream already ended or reset
    FRAME_SIZE_ERROR = 5  #: a frame larger than the advertised maximum, or a bad fixed size
    REFUSED_STREAM = 6  #: stream not processed (limit reached, or after GOAWAY); safe to retry
    CANCEL = 7  #: the stream is no longer needed (browser went away)
    ENHANCE_YOUR_CALM = 8  #: the peer floods (too many refused streams, pings)
    KEEPALIVE_TIMEOUT = 9  #: the peer stopped answering pings
    UNSUPPORTED_VERSION = 10  #: no common protocol version
    METADATA_TOO_LARGE = 11  #: an OPEN frame's metadata or a reason text is too long
    DESTINATION_REFUSED = 12  #: the agent refuses the destination (port index not configured)
    CONNECT_FAILED = 13  #: the agent could not reach the device
    SESSION_EXPIRED = 14  #: the session's lifetime is over
    SESSION_CLOSED = 15  #: the session was ended by a user, an administrator or the portal
    TICKET_REFUSED = 16  #: the tunnel ticket or client certificate is not acceptable
    DEVICE_CERT_CHANGED = 17  #: the device's TLS certificate changed during the session
    SUPERSEDED = 18  #: a newer tunnel for the same session replaced this one

    @classmethod
    def from_wire(cls, value: int) -> ErrorCode | int:
        """The enum member for ``value``, or the bare number for codes from a newer version."""
        try:
            return cls(value)
        except ValueError:
            return value


class ProtocolError(Exception):
    """Base of both protocol errors: ``code`` is the wire error code, ``str()`` the reason."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR,
                 stream_id: int = 0) -> None:
        super().__init__(message)
        self.code = code
        #: non-zero when the error concerns one stream only (a stream error, not fatal)
        self.stream_id = stream_id

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else ""


class LocalProtocolError(ProtocolError):
    """Our side tried to do something the protocol (or the current state) forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""
