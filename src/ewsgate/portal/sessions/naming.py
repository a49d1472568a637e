"""Pure rules of a remote session: its id, its host and URLs, its expiry, its relay node.

- **Id**: 160 random bits from :mod:`secrets`, written as 32 lower-case base32 characters.
  The id becomes a DNS label (``s-<id>.<relay domain>``), and host names are case-insensitive
  and allow only letters, digits and ``-``: ``token_urlsafe``'s ``_`` and upper case would not
  survive a browser's host normalisation, so the label alphabet is ``a-z`` and ``2-7``.
- **Host and URLs**: ``host = s-<id>.<domain>``; ``url = https://<host>[:port]/``;
  ``redirect_uri = https://<host>[:port]/.ewsgate/callback`` — registered with the session and
  matched exactly by the authorization server. The port is written only when it is not 443.
- **Expiry**: ``expires_at = now + min(configured, 30 min)``; :class:`SessionConfig` refuses a
  maximum above 30 minutes, so none can be configured.
- **Relay choice**: the relay with the fewest live sessions, ties broken by id, so sessions
  spread over nodes and the choice is repeatable in tests.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

__all__ = [
    "CALLBACK_PATH",
    "MAX_SESSION_SECONDS",
    "SESSION_ID_PATTERN",
    "RelayLike",
    "SessionAddress",
    "SessionConfig",
    "expiry_for",
    "new_session_id",
    "pick_relay",
    "session_address",
]

MAX_SESSION_SECONDS = 30 * 60
CALLBACK_PATH = "/.ewsgate/callback"
SESSION_ID_PATTERN = re.compile(r"[a-z2-7]{32}")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,200}}$){_LABEL}(\.{_LABEL})*")


@dataclass(frozen=True)
class SessionConfig:
    """Session settings, validated once: the duration can be lowered, never raised past 30 min."""

    max_seconds: int = MAX_SESSION_SECONDS
    open_timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_seconds <= MAX_SESSION_SECONDS:
            raise ValueError(
                f"session maximum {self.max_seconds}s is out of range: it must be between 1 "
                f"and {MAX_SESSION_SECONDS} seconds (30 minutes is the ceiling)"
            )
        if self.open_timeout_seconds <= 0:
            raise ValueError("open_timeout_seconds must be positive")


def new_session_id() -> str:
    """A fresh session id: 160 random bits, 32 characters of ``a-z2-7`` (a valid DNS label)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()


def expiry_for(now: datetime, config: SessionConfig) -> datetime:
    """When a session started at ``now`` ends."""
    return now + timedelta(seconds=min(config.max_seconds, MAX_SESSION_SECONDS))


@dataclass(frozen=True)
class SessionAddress:
    """Where the browser meets a session."""

    host: str
    url: str
    redirect_uri: str


def session_address(session_id: str, domain: str, port: int | None) -> SessionAddress:
    """The host, URL and OAuth redirect URI of ``session_id`` on a relay serving ``domain``."""
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        raise ValueError(f"session id {session_id!r} is not 32 characters of a-z2-7")
    domain = domain.strip().rstrip(".").lower()
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"relay domain {domain!r} is not a valid DNS name")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"relay public port {port} is not from 1 to 65535")
    host = f"s-{session_id}.{domain}"
    authority = host if port in (None, 443) else f"{host}:{port}"
    return SessionAddress(
        host=host,
        url=f"https://{authority}/",
        redirect_uri=f"https://{authority}{CALLBACK_PATH}",
    )


class RelayLike(Protocol):
    """What :func:`pick_relay` needs of a relay row."""

    @property
    def id(self) -> Any: ...


R = TypeVar("R", bound=RelayLike)


def pick_relay(relays: Sequence[R], live_counts: Mapping[str, int]) -> R:
    """The relay with the fewest live sessions (ties: lowest id)."""
    if not relays:
        raise LookupError(
            "no relay node is registered; register one with `ewsgate admin create-relay` "
            "and start it with `ewsgate relay`"
        )
    return min(relays, key=lambda r: (live_counts.get(str(r.id), 0), str(r.id)))
