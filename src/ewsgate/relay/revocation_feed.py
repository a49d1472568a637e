"""The relay's end of the portal's revocation stream: read it, obey it, reconnect.

One task per relay process holds ``GET {portal}/api/v1/relay/events`` open (HTTP Basic, the
relay's id and secret), feeds the bytes to :class:`~ewsgate.revocations.SseDecoder`, applies
each event to :class:`~ewsgate.relay.revocation.Revocations` and carries out the decision:
:meth:`TunnelRegistry.close_session` for every session to end, which closes the tunnel (GOAWAY
``SESSION_CLOSED``), makes the registry refuse the session's ticket from then on, and tells
the browser proxy to end the session's browser connections (the registry's session-end
listeners: WebSockets get close 1008, then every connection is cut).

A stream ends after ``stream_seconds`` (the portal closes it) or when nothing arrives for
``read_timeout`` seconds (the portal sends a heartbeat every few seconds); the feed then
reconnects at once, then with backoff up to ``retry_max`` seconds, and each new stream begins
with a snapshot the relay reconciles against. While no byte arrives for longer than the
revocations' ``unreachable_after``, new tunnels and sign-ins are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import httpx

from ewsgate.relay.clock import Clock
from ewsgate.relay.registry import TunnelRegistry
from ewsgate.relay.revocation import Revocations
from ewsgate.revocations import Event, EventError, SessionRevoked, Snapshot, SseDecoder
from ewsgate.textsafe import safe_text

__all__ = ["FeedError", "RevocationFeed"]

log = logging.getLogger(__name__)


class FeedError(Exception):
    """The portal refused or broke the event stream (the feed reconnects)."""


class RevocationFeed:
    """Keeps the portal's event stream open and applies it to the relay."""

    def __init__(self, portal_url: str, relay_id: str, relay_secret: str,
                 http: httpx.AsyncClient, registry: TunnelRegistry, revocations: Revocations,
                 clock: Clock, *, stream_seconds: float = 300.0, read_timeout: float = 15.0,
                 retry_max: float = 5.0) -> None:
        self.url = portal_url.rstrip("/") + "/api/v1/relay/events"
        self._auth = (relay_id, relay_secret)
        self._http = http
        self.registry = registry
        self.revocations = revocations
        self.clock = clock
        self.stream_seconds = stream_seconds
        self.read_timeout = read_timeout
        self.retry_max = retry_max
        self._closing: set[asyncio.Task[Any]] = set()
        #: streams opened (for tests and the log)
        self.connects = 0

    async def run(self) -> None:
        """Stream, apply, reconnect, until cancelled."""
        delay = 0.2
        while True:
            try:
                await self.stream_once()
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, FeedError, EventError) as exc:
                log.warning("portal event stream %s: %s; reconnecting in %.1f s", self.url,
                            safe_text(exc, limit=300), delay)
            except Exception:
                log.exception("portal event stream failed; reconnecting in %.1f s", delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(self.retry_max, delay * 2)

    async def stream_once(self) -> None:
        """One stream, from its snapshot to its end."""
        asked_at = self.clock.now()
        timeout = httpx.Timeout(10.0, read=self.read_timeout)
        async with self._http.stream("GET", self.url, auth=self._auth, timeout=timeout,
                                     params={"max_seconds": f"{self.stream_seconds:g}"},
                                     headers={"Accept": "text/event-stream"}) as response:
            if response.status_code != 200:
                body = (await response.aread())[:300].decode("utf-8", "replace")
                raise FeedError(f"the portal answered {response.status_code}: {body}")
            self.connects += 1
            decoder = SseDecoder()
            async for chunk in response.aiter_raw():
                self.revocations.heard(self.clock.now())
                for event in decoder.feed(chunk):
                    await self.apply(event, asked_at=asked_at)

    async def apply(self, event: Event, *, asked_at: float | None = None) -> None:
        """Apply one event and end the sessions it revokes (without waiting for them)."""
        tunnels = [Revocations.tunnel(live.ticket, live.registered_at)
                   for live in self.registry.live_tunnels]
        decision = self.revocations.apply(event, now=self.clock.now(), tunnels=tunnels,
                                          asked_at=asked_at)
        ending = dict(decision.close)
        if isinstance(event, SessionRevoked):
            ending.setdefault(event.session_id, event.reason)
        elif isinstance(event, Snapshot):
            for revoked in event.revoked_sessions:
                if not self.registry.is_closed(revoked.session_id):
                    ending.setdefault(revoked.session_id, revoked.reason)
            log.info("portal snapshot: %d live, %d ended sessions, %d installation "
                     "revocations; ending %d here", len(event.live_sessions),
                     len(event.revoked_sessions), len(event.installations), len(ending))
        for session_id, reason in ending.items():
            if self.registry.tunnel(session_id) is not None:
                log.info("ending session %s at the portal's word: %s",
                         safe_text(session_id, limit=64), safe_text(reason, limit=300))
            task = asyncio.ensure_future(self.registry.close_session(session_id, reason))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        for task in list(self._closing):
            with contextlib.suppress(Exception):
                await task
