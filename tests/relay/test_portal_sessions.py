"""The relay's cached view of session liveness at the portal."""

from __future__ import annotations

import httpx

from ewsgate.relay.clock import ManualClock
from ewsgate.relay.portal_sessions import PortalSessions


def _portal(live: list[bool], calls: list[str]) -> httpx.AsyncClient:
    """The portal's relay API, outside the subject: answers with the current liveness."""

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"live": live[0], "status": "ready" if live[0] else
                                         "ended", "user_id": 7, "expires_at_unix": 2e9})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def test_answers_are_cached_for_the_ttl() -> None:
    calls: list[str] = []
    clock = ManualClock()
    async with _portal([True], calls) as http:
        sessions = PortalSessions("https://portal", "1", "s", http, clock, ttl=5.0)
        assert (await sessions.facts("abc")).live  # type: ignore[union-attr]
        clock.advance(4)
        assert (await sessions.facts("abc")).live  # type: ignore[union-attr]
    assert calls == ["/api/v1/relay/sessions/abc"]


async def test_a_shorter_max_age_sees_an_end_at_once() -> None:
    """When the tunnel disappears the relay asks afresh, so *End* shows the ended page."""
    calls: list[str] = []
    live = [True]
    clock = ManualClock()
    async with _portal(live, calls) as http:
        sessions = PortalSessions("https://portal", "1", "s", http, clock, ttl=5.0)
        assert (await sessions.facts("abc")).live  # type: ignore[union-attr]
        live[0] = False
        clock.advance(0.2)
        assert (await sessions.facts("abc", max_age=0.5)).live  # still within 0.5 s
        clock.advance(0.4)
        facts = await sessions.facts("abc", max_age=0.5)
        assert facts is not None and not facts.live
    assert len(calls) == 2
