"""The relay's OAuth client (ewsgate.relay.browser_auth) against this authorization server.

Both real: the relay's BrowserAuth talks HTTP (httpx over ASGI, no sockets) to the portal
application; the browser is an httpx client carrying the portal login cookie. This is the
contract written down in docs/relay.md and docs/oauth.md, exercised end to end.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from ewsgate.relay.browser_auth import (
    SESSION_COOKIE,
    STATE_COOKIE,
    BrowserAuth,
    OAuthClientConfig,
)
from ewsgate.relay.clock import ManualClock
from ewsgate.relay.portal_sessions import PortalSessions
from ewsgate.relay.tickets import JwksKeySource
from sessions.rt_http import Portal
from sessions.rt_world import ISSUER, settle

pytestmark = pytest.mark.db


def _relay(portal: Portal, http: httpx.AsyncClient, name: str = "relay-x") -> BrowserAuth:
    world = portal.world
    clock = ManualClock(start=world.clock.now.timestamp())
    config = OAuthClientConfig(relay_id=str(world.relays[name]),
                               relay_secret=world.relay_secrets[name], portal_url=ISSUER,
                               cookie_key=b"k" * 32)
    port = {"relay-x": 8443, "relay-y": 443}[name]
    domain = {"relay-x": "rt.localhost", "relay-y": "rt2.localhost"}[name]

    def host(session_id: str) -> str:
        return f"s-{session_id}.{domain}" + ("" if port == 443 else f":{port}")

    async def fetch(url: str) -> dict:
        response = await http.get(url.removeprefix(ISSUER))
        response.raise_for_status()
        return response.json()

    sessions = PortalSessions(ISSUER, config.relay_id, config.relay_secret, http, clock)
    return BrowserAuth(config, session_host=host, clock=clock,
                       keys=JwksKeySource(ISSUER, fetch=fetch), http=http, sessions=sessions)


async def _session(portal: Portal, browser: httpx.AsyncClient, who: str = "tech") -> dict:
    csrf = await portal.sign_in(browser, who)
    started = await browser.post(f"/api/v1/devices/{portal.world.device['on']}/remote-sessions",
                                 headers={"X-CSRF-Token": csrf, "Origin": ISSUER})
    assert started.status_code == 201, started.text
    await settle(portal.world)
    return started.json()


def _header(response, name: bytes) -> list[str]:
    return [v.decode() for k, v in response.headers if k.lower() == name.lower()]


async def _sign_in_through_portal(auth: BrowserAuth, browser: httpx.AsyncClient,
                                  session: dict):
    began = auth.begin(session["session_id"], "/index.html?x=1")
    assert began.status == 302
    location = _header(began, b"Location")[0]
    assert location.startswith(ISSUER + "/oauth/authorize?")
    state_cookie = _header(began, b"Set-Cookie")[0].split(";")[0]
    assert state_cookie.startswith(STATE_COOKIE + "=")
    answer = await browser.get(location.removeprefix(ISSUER))
    assert answer.status_code == 303, answer.text
    callback = answer.headers["location"]
    assert callback.startswith(session["url"] + ".ewsgate/callback?")
    parts = urlsplit(callback)
    return await auth.callback(session["session_id"], f"{parts.path}?{parts.query}",
                               state_cookie.encode(), session_end=float(session["expires_in"]
                                                                        + auth._clock.now()))


@pytest.fixture
async def http(portal: Portal):
    async with portal.client() as client:
        yield client


async def test_relay_signs_the_owner_in(portal: Portal, http: httpx.AsyncClient) -> None:
    async with portal.client() as browser:
        session = await _session(portal, browser)
        auth = _relay(portal, http)
        done = await _sign_in_through_portal(auth, browser, session)
    assert done.status == 303, done.body
    assert _header(done, b"Location") == ["/index.html?x=1"]
    cookie = next(c for c in _header(done, b"Set-Cookie") if c.startswith(SESSION_COOKIE))
    identity = auth.identify(session["session_id"], cookie.split(";")[0].encode())
    assert identity is not None and identity.email == "tech@example.com"
    assert identity.user_id == str(portal.world.users["tech"])


async def test_relay_reads_session_facts_from_the_portal(portal: Portal,
                                                         http: httpx.AsyncClient) -> None:
    async with portal.client() as browser:
        session = await _session(portal, browser)
    world = portal.world
    clock = ManualClock(start=world.clock.now.timestamp())
    own = PortalSessions(ISSUER, str(world.relays["relay-x"]), world.relay_secrets["relay-x"],
                         http, clock)
    facts = await own.facts(session["session_id"])
    assert facts is not None and facts.live and facts.user_id == str(world.users["tech"])
    assert facts.expires_at == world.clock.now.timestamp() + 1800
    other = PortalSessions(ISSUER, str(world.relays["relay-y"]), world.relay_secrets["relay-y"],
                           http, clock)
    hidden = await other.facts(session["session_id"])
    assert hidden is not None and not hidden.live and hidden.user_id is None


async def test_relay_refuses_another_users_browser(portal: Portal,
                                                   http: httpx.AsyncClient) -> None:
    async with portal.client() as owner:
        session = await _session(portal, owner, "tech")
    async with portal.client() as intruder:
        await portal.sign_in(intruder, "tech2")
        done = await _sign_in_through_portal(_relay(portal, http), intruder, session)
    assert done.status != 303
    assert done.detail == "portal_access_denied"
    assert not any(c.startswith(SESSION_COOKIE) for c in _header(done, b"Set-Cookie"))


async def test_relay_y_cannot_redeem_a_session_of_relay_x(portal: Portal,
                                                          http: httpx.AsyncClient) -> None:
    """relay-y's client asks for a session pinned to relay-x: the portal refuses the request
    outright (an error page, no redirect), so no code ever reaches relay-y."""
    async with portal.client() as browser:
        session = await _session(portal, browser)
        assert session["url"].startswith(f"https://s-{session['session_id']}.rt.localhost:8443")
        wrong = _relay(portal, http, "relay-y")
        began = wrong.begin(session["session_id"], "/")
        answer = await browser.get(_header(began, b"Location")[0].removeprefix(ISSUER))
    assert answer.status_code == 400 and "location" not in answer.headers
