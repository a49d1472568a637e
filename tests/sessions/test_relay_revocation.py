"""The portal tells its relays what it revoked: the relay's real RevocationFeed and TunnelRegistry
against the real portal application over ASGI (no sockets), one test per trigger.

Each trigger is driven through the portal's own API, as the person who would do it; the relay
then reads ``GET /api/v1/relay/events`` and must have ended the session itself — whatever the
agent does (there is no agent here at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from ewsgate.portal.sessions.revocation import certificate_replaced, prune_revocations
from ewsgate.portal.store.models import Installation, RemoteSession, RoleAssignment
from ewsgate.relay.clock import ManualClock
from ewsgate.relay.registry import TunnelRegistry
from ewsgate.relay.revocation import Revocations
from ewsgate.relay.revocation_feed import FeedError, RevocationFeed
from ewsgate.relay.tickets import TunnelTicket
from ewsgate.relay.upstream import DeviceView
from ewsgate.revocations import SessionRevoked, Snapshot, SseDecoder
from oauth.test_server import _code as oauth_code
from oauth.test_server import _redeem as oauth_redeem
from sessions.rt_http import Portal
from sessions.rt_world import ISSUER, settle

pytestmark = pytest.mark.db


@pytest.fixture
async def http(portal: Portal):
    async with portal.client() as client:
        yield client


def _feed(portal: Portal, http: httpx.AsyncClient, name: str = "relay-x") -> RevocationFeed:
    world = portal.world
    clock = ManualClock(start=world.clock.now.timestamp())
    return RevocationFeed(ISSUER, str(world.relays[name]), world.relay_secrets[name], http,
                          TunnelRegistry(clock), Revocations(), clock, stream_seconds=0)


async def _read(feed: RevocationFeed) -> None:
    await feed.stream_once()
    await feed.aclose()


class Owner:
    """The technician's browser: signed in to the portal, with a live session."""

    def __init__(self, portal: Portal, browser: httpx.AsyncClient, csrf: str,
                 session: dict) -> None:
        self.portal, self.browser, self.csrf, self.session = portal, browser, csrf, session

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf, "Origin": ISSUER}


async def _owner(portal: Portal, browser: httpx.AsyncClient) -> Owner:
    csrf = await portal.sign_in(browser, "tech")
    started = await browser.post(f"/api/v1/devices/{portal.world.device['on']}/remote-sessions",
                                 headers={"X-CSRF-Token": csrf, "Origin": ISSUER})
    assert started.status_code == 201, started.text
    await settle(portal.world)
    return Owner(portal, browser, csrf, started.json())


async def _as_admin(portal: Portal, method: str, path: str, *, who: str = "admin",
                    **kwargs: object) -> httpx.Response:
    token = await portal.token(who)
    async with portal.client() as admin:
        response = await admin.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                       **kwargs)  # type: ignore[arg-type]
    assert response.status_code < 300, response.text
    return response


async def _end(o: Owner) -> None:
    r = await o.browser.delete(f"/api/v1/remote-sessions/{o.session['session_id']}",
                               headers=o.headers)
    assert r.status_code == 200, r.text


async def _terminate(o: Owner) -> None:
    await _as_admin(o.portal, "DELETE", f"/api/v1/remote-sessions/{o.session['session_id']}")


async def _switch_off(o: Owner) -> None:
    await _as_admin(o.portal, "PUT",
                    f"/api/v1/devices/{o.portal.world.device['on']}/remote-technician",
                    who="configurer", json={"enabled": False})


async def _sign_out(o: Owner) -> None:
    r = await o.browser.post("/api/v1/auth/logout", headers=o.headers)
    assert r.status_code == 204, r.text


async def _deactivate(o: Owner) -> None:
    await _as_admin(o.portal, "PATCH", f"/api/v1/users/{o.portal.world.users['tech']}",
                    json={"active": False})


async def _delete_user(o: Owner) -> None:
    await _as_admin(o.portal, "DELETE", f"/api/v1/users/{o.portal.world.users['tech']}")


async def _lose_role(o: Owner) -> None:
    async with o.portal.world.db.transaction() as s:
        assignment = await s.scalar(select(RoleAssignment.id).where(
            RoleAssignment.user_id == o.portal.world.users["tech"]))
    await _as_admin(o.portal, "DELETE", f"/api/v1/role-assignments/{assignment}")


async def _disable_installation(o: Owner) -> None:
    await _as_admin(o.portal, "PATCH", f"/api/v1/installations/{o.portal.world.installation}",
                    json={"enabled": False})


async def _delete_installation(o: Owner) -> None:
    await _as_admin(o.portal, "DELETE", f"/api/v1/installations/{o.portal.world.installation}")


async def _code_reuse(o: Owner) -> None:
    # the portal's real authorization server: a code issued to the owner, redeemed twice
    world = o.portal.world
    async with world.db.transaction() as s:
        row = await s.get(RemoteSession, o.session["session_id"])
    assert row is not None
    code = await oauth_code(world, row)
    assert (await oauth_redeem(world, row, code)).status == 200
    assert (await oauth_redeem(world, row, code)).status == 400


TRIGGERS: dict[str, Callable[[Owner], Awaitable[None]]] = {
    "end": _end, "terminate": _terminate, "switch_off": _switch_off, "sign_out": _sign_out,
    "deactivate": _deactivate, "delete_user": _delete_user, "lose_role": _lose_role,
    "disable_installation": _disable_installation,
    "delete_installation": _delete_installation, "code_reuse": _code_reuse,
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
async def test_every_trigger_ends_the_session_at_the_relay(portal: Portal, http: httpx.AsyncClient,
                                                           trigger: str) -> None:
    async with portal.client() as browser:
        owner = await _owner(portal, browser)
        sid = owner.session["session_id"]
        feed = _feed(portal, http)
        await _read(feed)  # connected before: the session is live, nothing ended
        assert not feed.registry.is_closed(sid)
        assert feed.revocations.refusal(_ticket(portal, sid), now=feed.clock.now()) is None
        await TRIGGERS[trigger](owner)
        await _read(feed)
    assert feed.registry.is_closed(sid), trigger
    refusal = feed.revocations.refusal(_ticket(portal, sid, generation=7), now=feed.clock.now())
    assert refusal is not None and refusal.code in ("session_revoked", "installation_revoked")
    # a relay started afresh learns the same from its first snapshot (reconciliation)
    fresh = _feed(portal, http)
    await _read(fresh)
    assert fresh.registry.is_closed(sid)


def _ticket(portal: Portal, sid: str, *, generation: int = 1) -> TunnelTicket:
    now = portal.world.clock.now.timestamp()
    return TunnelTicket(session_id=sid, installation_id=str(portal.world.installation),
                        relay_id=str(portal.world.relays["relay-x"]), jti="j", issued_at=now - 1,
                        expires_at=now + 600, device=DeviceView(ip="192.0.2.10"),
                        generation=generation, claims={}, certificate_thumbprint="T")


async def test_the_stream_begins_with_a_snapshot_for_this_relay_only(
        portal: Portal, http: httpx.AsyncClient) -> None:
    async with portal.client() as browser:
        owner = await _owner(portal, browser)
    world = portal.world
    answers = {}
    for name in ("relay-x", "relay-y"):
        response = await http.get("/api/v1/relay/events?max_seconds=0",
                                  auth=(str(world.relays[name]), world.relay_secrets[name]))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        answers[name] = SseDecoder().feed(response.content)
    first = answers["relay-x"][0]
    assert isinstance(first, Snapshot) and first.live_sessions == (owner.session["session_id"],)
    other = answers["relay-y"][0]
    assert isinstance(other, Snapshot) and other.live_sessions == ()


async def test_the_stream_needs_the_relays_credentials(portal: Portal,
                                                       http: httpx.AsyncClient) -> None:
    missing = await http.get("/api/v1/relay/events?max_seconds=0")
    wrong = await http.get("/api/v1/relay/events?max_seconds=0",
                           auth=(str(portal.world.relays["relay-x"]), "not-the-secret"))
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_relay_credentials"


async def test_an_ended_session_is_sent_once_while_the_stream_is_open(
        portal: Portal, http: httpx.AsyncClient) -> None:
    """The replica's poller carries the revocation to the open stream (then its overlap
    re-reads it for 5 s; the stream sends it once)."""
    world = portal.world
    async with portal.client() as browser:
        owner = await _owner(portal, browser)
        sid = owner.session["session_id"]
        streaming = asyncio.ensure_future(http.get(
            "/api/v1/relay/events?max_seconds=3",
            auth=(str(world.relays["relay-x"]), world.relay_secrets["relay-x"])))
        for _ in range(200):  # until the stream has its snapshot and is subscribed
            streams = portal.rt.revocation_streams
            if streams is not None and streams._subscribers:
                break
            await asyncio.sleep(0.01)
        await _end(owner)
        response = await streaming
    events = SseDecoder().feed(response.content)
    assert isinstance(events[0], Snapshot) and sid in events[0].live_sessions
    revoked = [e for e in events if isinstance(e, SessionRevoked)]
    assert [e.session_id for e in revoked] == [sid]
    assert "ended by its owner" in revoked[0].reason
    streams = portal.rt.revocation_streams
    assert streams is not None and streams.polls >= 2
    assert not streams._subscribers  # the poller stops with the last stream


async def test_an_ended_session_is_in_the_next_snapshot_once(portal: Portal,
                                                             http: httpx.AsyncClient) -> None:
    async with portal.client() as browser:
        owner = await _owner(portal, browser)
        await _end(owner)
    world = portal.world
    response = await http.get("/api/v1/relay/events?max_seconds=0",
                              auth=(str(world.relays["relay-x"]), world.relay_secrets["relay-x"]))
    events = SseDecoder().feed(response.content)
    assert isinstance(events[0], Snapshot)
    assert [e.session_id for e in events[0].revoked_sessions] == [owner.session["session_id"]]
    assert not [e for e in events[1:] if isinstance(e, SessionRevoked)]  # not repeated


async def test_re_enrolment_revokes_the_old_certificate_at_the_relay(
        portal: Portal, http: httpx.AsyncClient) -> None:
    """The one hook enrolment calls when a new certificate supersedes the old one."""
    world = portal.world
    async with portal.client() as browser:
        owner = await _owner(portal, browser)
    async with world.db.transaction() as s:
        installation = await s.get(Installation, world.installation)
        assert installation is not None
        await certificate_replaced(s, installation.id, "OLD-THUMB", world.clock())
    feed = _feed(portal, http)
    await _read(feed)
    assert feed.registry.is_closed(owner.session["session_id"])
    later = TunnelTicket(session_id="another", installation_id=str(world.installation),
                         relay_id="x", jti="j2", issued_at=world.clock.now.timestamp() + 60,
                         expires_at=world.clock.now.timestamp() + 600,
                         device=DeviceView(ip="192.0.2.10"), generation=1, claims={},
                         certificate_thumbprint="OLD-THUMB")
    refusal = feed.revocations.refusal(later, now=feed.clock.now())
    assert refusal is not None and refusal.code == "installation_revoked"
    # kept for as long as a ticket issued before it can live, then pruned
    async with world.db.transaction() as s:
        assert await prune_revocations(s, world.clock() + timedelta(minutes=30)) == 0
        assert await prune_revocations(s, world.clock() + timedelta(minutes=36)) == 1


async def test_a_feed_the_portal_refuses_leaves_the_relay_refusing_new_work(
        portal: Portal, http: httpx.AsyncClient) -> None:
    world = portal.world
    clock = ManualClock(start=world.clock.now.timestamp())
    feed = RevocationFeed(ISSUER, str(world.relays["relay-x"]), "a-wrong-secret", http,
                          TunnelRegistry(clock), Revocations(), clock, stream_seconds=0)
    with pytest.raises(FeedError, match=r"401.*invalid_relay_credentials"):
        await feed.stream_once()
    refusal = feed.revocations.refusal(_ticket(portal, "any"), now=clock.now())
    assert refusal is not None and refusal.code == "portal_unreachable"
    assert "--portal-url" in str(refusal)
