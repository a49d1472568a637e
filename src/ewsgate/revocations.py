"""Revocation events from the portal to its relays: the messages and their wire form.

Both sides import this module (the portal writes the events, the relay reads them); it holds no
networking code. The portal's relay API serves them as a server-sent-events stream
(``GET /api/v1/relay/events``, see :mod:`ewsgate.portal.api.relay_api`); a message broker could
carry the same JSON bodies later, one message per event, with the same parser.

A stream always begins with a :class:`Snapshot` — the relay reconciles against it — and then
carries :class:`SessionRevoked` and :class:`InstallationRevoked` as they happen, with a
:class:`Heartbeat` whenever nothing else was sent for a few seconds, so that the relay can tell
a quiet portal from an unreachable one::

    event: snapshot
    data: {"v": 1, "server_time": 1764870000.5, "live_sessions": ["abc"], ...}

    event: session_revoked
    data: {"v": 1, "session_id": "abc", "reason": "ended by its owner", "expires_at": ...}

Times are the portal's epoch seconds. Events are idempotent: a relay may see one twice (the
portal re-reads a short window to miss none) and applying it again changes nothing.

``cert_thumbprint`` is the ``x5t#S256`` form of RFC 8705: the unpadded base64url SHA-256 of the
certificate's DER encoding. Tunnel tickets carry it as ``cnf: {"x5t#S256": ...}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EVENTS_VERSION",
    "MAX_LINE",
    "Event",
    "EventError",
    "Heartbeat",
    "InstallationRevoked",
    "SessionRevoked",
    "Snapshot",
    "SseDecoder",
    "cert_thumbprint",
    "encode_event",
    "parse_event",
    "to_json",
]

EVENTS_VERSION = 1
#: the longest SSE line the decoder accepts (a snapshot of a busy relay fits many times over)
MAX_LINE = 8 * 1024 * 1024
_EOL = re.compile(rb"[\r\n]")


class EventError(ValueError):
    """An event that cannot be understood (wrong version, missing or mistyped field)."""


def cert_thumbprint(der: bytes) -> str:
    """``x5t#S256`` of a DER certificate: unpadded base64url of its SHA-256."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionRevoked:
    """The session ended at the portal: the relay ends it and refuses its ticket."""

    session_id: str
    reason: str
    #: the session's own end; the relay forgets the revocation after it
    expires_at: float

    def __post_init__(self) -> None:
        if not self.session_id or len(self.session_id) > 64:
            raise EventError(f"session id {self.session_id[:70]!r} is empty or too long")


@dataclass(frozen=True, kw_only=True, slots=True)
class InstallationRevoked:
    """An installation was disabled, deleted or re-enrolled at ``revoked_at``.

    Every ticket of it issued at or before ``revoked_at`` is refused, and so is the certificate
    ``thumbprint`` when it is given (the one a re-enrolment superseded).
    """

    installation_id: str
    revoked_at: float
    reason: str
    thumbprint: str | None = None

    def __post_init__(self) -> None:
        if not self.installation_id:
            raise EventError("an installation revocation needs an installation id")


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """What the portal knows now about this relay: the reconciliation data."""

    server_time: float
    #: sessions pinned to this relay that are live now
    live_sessions: tuple[str, ...]
    #: sessions pinned to this relay that ended and have not reached their expiry yet
    revoked_sessions: tuple[SessionRevoked, ...]
    #: installation revocations recent enough that a ticket issued before them is still valid
    installations: tuple[InstallationRevoked, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Heartbeat:
    """Nothing happened; the portal is there."""

    server_time: float


Event = Snapshot | SessionRevoked | InstallationRevoked | Heartbeat

_NAMES: dict[type[Any], str] = {Snapshot: "snapshot", SessionRevoked: "session_revoked",
                                InstallationRevoked: "installation_revoked",
                                Heartbeat: "heartbeat"}


def _session_json(event: SessionRevoked) -> dict[str, Any]:
    return {"session_id": event.session_id, "reason": event.reason,
            "expires_at": event.expires_at}


def _installation_json(event: InstallationRevoked) -> dict[str, Any]:
    return {"installation_id": event.installation_id, "revoked_at": event.revoked_at,
            "reason": event.reason, "thumbprint": event.thumbprint}


def to_json(event: Event) -> dict[str, Any]:
    """The event's JSON body (with the version)."""
    body: dict[str, Any]
    if isinstance(event, SessionRevoked):
        body = _session_json(event)
    elif isinstance(event, InstallationRevoked):
        body = _installation_json(event)
    elif isinstance(event, Heartbeat):
        body = {"server_time": event.server_time}
    else:
        body = {"server_time": event.server_time, "live_sessions": list(event.live_sessions),
                "revoked_sessions": [_session_json(s) for s in event.revoked_sessions],
                "installations": [_installation_json(i) for i in event.installations]}
    return {"v": EVENTS_VERSION, **body}


def encode_event(event: Event) -> bytes:
    """One SSE frame: ``event: <name>`` and one ``data:`` line of compact JSON."""
    data = json.dumps(to_json(event), separators=(",", ":"))
    return f"event: {_NAMES[type(event)]}\ndata: {data}\n\n".encode()


def _str(data: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise EventError(f"field {key!r} must be a string")
    return str(value)


def _num(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise EventError(f"field {key!r} must be a number")
    return float(value)


def _session(data: Any) -> SessionRevoked:
    if not isinstance(data, dict):
        raise EventError("a session revocation must be a JSON object")
    return SessionRevoked(session_id=str(_str(data, "session_id")),
                          reason=str(_str(data, "reason", optional=True) or "ended"),
                          expires_at=_num(data, "expires_at"))


def _installation(data: Any) -> InstallationRevoked:
    if not isinstance(data, dict):
        raise EventError("an installation revocation must be a JSON object")
    return InstallationRevoked(installation_id=str(_str(data, "installation_id")),
                               revoked_at=_num(data, "revoked_at"),
                               reason=str(_str(data, "reason", optional=True) or "revoked"),
                               thumbprint=_str(data, "thumbprint", optional=True))


def parse_event(name: str, data: str) -> Event | None:
    """The event named ``name`` with JSON body ``data``; None for a name this version does not
    know (a newer portal may add events); :class:`EventError` for a malformed body."""
    if name not in _NAMES.values():
        return None
    try:
        body = json.loads(data)
    except ValueError:
        raise EventError(f"the {name} event's data is not JSON") from None
    if not isinstance(body, dict):
        raise EventError(f"the {name} event's data is not a JSON object")
    if body.get("v") != EVENTS_VERSION:
        raise EventError(f"the {name} event has version {body.get('v')!r}; this relay "
                         f"understands version {EVENTS_VERSION}: upgrade the relay")
    if name == "session_revoked":
        return _session(body)
    if name == "installation_revoked":
        return _installation(body)
    if name == "heartbeat":
        return Heartbeat(server_time=_num(body, "server_time"))
    live = body.get("live_sessions")
    revoked = body.get("revoked_sessions")
    installations = body.get("installations")
    if not (isinstance(live, list) and isinstance(revoked, list)
            and isinstance(installations, list)):
        raise EventError("a snapshot needs live_sessions, revoked_sessions and installations "
                         "lists")
    return Snapshot(server_time=_num(body, "server_time"),
                    live_sessions=tuple(str(s) for s in live),
                    revoked_sessions=tuple(_session(s) for s in revoked),
                    installations=tuple(_installation(i) for i in installations))


class SseDecoder:
    """Sans-I/O reader of a ``text/event-stream``: bytes in, events out.

    Follows the WHATWG event-stream rules this stream needs: lines end with LF, CR LF or CR;
    ``event:`` names the event, ``data:`` lines are joined with LF, a blank line dispatches,
    lines starting with ``:`` are comments. A line longer than :data:`MAX_LINE` is an
    :class:`EventError` (the caller drops the connection and reconnects).
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._name = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse ``chunk``; return the events it completed. Raises :class:`EventError`."""
        self._buffer += chunk
        events: list[Event] = []
        while True:
            found = _EOL.search(self._buffer)
            cut = found.start() if found else -1
            if cut < 0:
                if len(self._buffer) > MAX_LINE:
                    raise EventError(f"an event-stream line is longer than {MAX_LINE} bytes")
                return events
            if self._buffer[cut] == 0x0D and cut + 1 == len(self._buffer):
                return events  # a CR at the end: wait to see whether LF follows
            line = self._buffer[:cut].decode("utf-8", "replace")
            skip = 2 if self._buffer[cut:cut + 2] == b"\r\n" else 1
            self._buffer = self._buffer[cut + skip:]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> Event | None:
        if not line:
            name, data = self._name or "message", "\n".join(self._data)
            self._name, self._data = "", []
            return parse_event(name, data) if data else None
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        return None
