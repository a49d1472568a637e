"""The relay's heartbeat to the portal, and its drain.

One task per relay process ``POST``s ``{portal}/api/v1/relay/heartbeat`` (HTTP Basic, the
relay's id and secret) every few seconds with what the relay is doing::

    serving ──SIGTERM──▶ draining (deadline) ──no live session, or the deadline──▶ stopped
                          heartbeats go on: the portal places no new session here, and the
                          relay is not taken for dead while its sessions run to their end

The portal answers with the interval it expects and its timeout; the relay adopts the interval
(bounded to 1..30 s). A heartbeat the portal does not answer is logged and retried at the next
tick; after the portal's timeout without one the portal takes the relay for lost and fails its
live sessions (``relay_lost``), which is what should happen to a relay that cannot reach it.

:func:`drain` is the relay's side of a planned stop: it waits until no session is live on the
relay or the drain deadline comes, then ends what is left with the browser's clear page
(:meth:`TunnelRegistry.close_session`, the same end a revocation gets); the caller then says
``stopped`` and the portal ends those sessions as planned (``relay_drained``), not failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from ewsgate.relay.clock import Clock
from ewsgate.relay.registry import TunnelRegistry

__all__ = ["DRAIN_REASON", "RelayHeartbeat", "drain"]

log = logging.getLogger(__name__)

DRAIN_REASON = ("this relay was shut down for maintenance and ended the session at its drain "
                "deadline; start a new session from the portal, it goes to another relay")


class RelayHeartbeat:
    """Tells the portal, every ``interval`` seconds, that this relay is up and its state."""

    def __init__(self, portal_url: str, relay_id: str, relay_secret: str,
                 http: httpx.AsyncClient, clock: Clock, *, interval: float = 5.0) -> None:
        self.url = portal_url.rstrip("/") + "/api/v1/relay/heartbeat"
        self._auth = (relay_id, relay_secret)
        self._http = http
        self.clock = clock
        self.interval = interval
        self.state = "serving"
        self.drain_deadline: float | None = None
        #: heartbeats the portal accepted (for tests and the log)
        self.accepted = 0
        self._wake = asyncio.Event()

    async def beat(self) -> bool:
        """Send one heartbeat; True when the portal accepted it."""
        body: dict[str, Any] = {"state": self.state}
        if self.drain_deadline is not None:
            body["drain_deadline_unix"] = self.drain_deadline
        try:
            response = await self._http.post(self.url, json=body, auth=self._auth,
                                             timeout=httpx.Timeout(5.0))
        except httpx.HTTPError as exc:
            log.warning("heartbeat to %s failed: %s; retrying in %.0f s", self.url, exc,
                        self.interval)
            return False
        if response.status_code != 200:
            log.warning("the portal refused the heartbeat (%s): %s", response.status_code,
                        response.text[:300])
            return False
        with contextlib.suppress(ValueError, TypeError, KeyError):
            self.interval = min(30.0, max(1.0, float(response.json()["heartbeat_interval"])))
        self.accepted += 1
        return True

    async def run(self) -> None:
        """Heartbeat until cancelled; a state change sends one at once."""
        while True:
            await self.beat()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()

    def set_draining(self, deadline: float) -> None:
        """From now on, say ``draining`` until ``deadline`` (sent at once by :meth:`run`)."""
        self.state, self.drain_deadline = "draining", deadline
        self._wake.set()

    async def stopped(self) -> bool:
        """Say ``stopped`` once (the portal ends this relay's sessions as planned)."""
        self.state, self.drain_deadline = "stopped", None
        return await self.beat()


async def drain(registry: TunnelRegistry, clock: Clock, deadline: float,
                reason: str = DRAIN_REASON) -> int:
    """Wait until no session is live on the relay or ``deadline`` comes, then end what is left
    with ``reason`` (the browser gets the clear page); returns how many were ended."""
    while registry.sessions and clock.now() < deadline:
        until = asyncio.ensure_future(clock.sleep_until(deadline))
        change = asyncio.ensure_future(registry.wait_change())
        try:
            await asyncio.wait((until, change), return_when=asyncio.FIRST_COMPLETED)
        finally:
            until.cancel()
            change.cancel()
    left = registry.sessions
    if left:
        log.info("drain deadline: ending %d session(s) still live", len(left))
        await asyncio.gather(*(registry.close_session(sid, reason) for sid in left))
    return len(left)
