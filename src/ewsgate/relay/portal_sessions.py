"""What the portal says about a session: is it still live, and who owns it.

The relay learns most of a session from the agent's tunnel ticket. Two facts only the portal
knows: whether the session was **ended early** (by its user, an administrator, or by disabling
Remote Technician on the device), and **who owns it**. The relay asks
``GET {portal}/api/v1/relay/sessions/{id}`` (HTTP Basic, relay id and secret) in two places:

- at sign-in (the OAuth callback): the token's ``sub`` must be the session's owner and the
  session must be live. The portal already checked this before issuing the code; checking it
  again costs one request per sign-in and keeps a portal bug from opening a session to the
  wrong person;
- when a known session has no live tunnel before its expiry: an "ended" answer gives the
  technician the *session ended* page instead of *device unreachable*.

Answers are cached for ``ttl`` seconds per session. A portal that cannot be reached yields
``None`` ("don't know"), and the caller falls back to what the relay itself knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from ewsgate.relay.clock import Clock

__all__ = ["PortalSessions", "SessionFacts", "SessionStatusSource"]


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """The portal's view of one session."""

    session_id: str
    live: bool
    status: str
    user_id: str | None
    expires_at: float | None


class SessionStatusSource(Protocol):
    """Where the relay asks about a session; None means "could not tell"."""

    async def facts(self, session_id: str, *,
                    max_age: float | None = None) -> SessionFacts | None: ...


class PortalSessions:
    """:class:`SessionStatusSource` over the portal's relay API, with a short cache."""

    def __init__(self, portal_url: str, relay_id: str, relay_secret: str,
                 http: httpx.AsyncClient, clock: Clock, ttl: float = 5.0) -> None:
        self._base = portal_url.rstrip("/") + "/api/v1/relay/sessions/"
        self._auth = (relay_id, relay_secret)
        self._http = http
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[float, SessionFacts | None]] = {}

    async def facts(self, session_id: str, *,
                    max_age: float | None = None) -> SessionFacts | None:
        """The session's facts, from a cached answer younger than ``max_age`` (default: ttl)."""
        now = self._clock.now()
        cached = self._cache.get(session_id)
        limit = self._ttl if max_age is None else min(max_age, self._ttl)
        if cached is not None and now - cached[0] < limit:
            return cached[1]
        try:
            response = await self._http.get(self._base + quote(session_id, safe=""),
                                            auth=self._auth, timeout=5.0)
        except httpx.HTTPError:
            return None
        if response.status_code == 404:
            facts: SessionFacts | None = SessionFacts(session_id, False, "unknown", None, None)
        elif response.status_code != 200:
            return None
        else:
            try:
                data: Any = response.json()
                facts = SessionFacts(
                    session_id=session_id, live=bool(data["live"]),
                    status=str(data.get("status") or ""),
                    user_id=str(data["user_id"]) if data.get("user_id") is not None else None,
                    expires_at=float(data["expires_at_unix"])
                    if data.get("expires_at_unix") is not None else None)
            except (ValueError, KeyError, TypeError):
                return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[session_id] = (now, facts)
        return facts
