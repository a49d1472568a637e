"""The relay's heartbeat (ewsgate.relay.heartbeat) against the portal's relay API, both real
(httpx over ASGI, no sockets): what the relay says decides where sessions go and how its
sessions end."""

from __future__ import annotations

import httpx
import pytest

from ewsgate.relay.clock import ManualClock
from ewsgate.relay.heartbeat import RelayHeartbeat
from sessions.rt_http import BASE, Portal
from sessions.rt_world import settle

pytestmark = pytest.mark.db


def _heartbeat(portal: Portal, http: httpx.AsyncClient, name: str,
               secret: str | None = None) -> RelayHeartbeat:
    world = portal.world
    return RelayHeartbeat(BASE, str(world.relays[name]), secret or world.relay_secrets[name],
                          http, ManualClock(start=world.clock.now.timestamp()))


async def _start(portal: Portal) -> dict:
    async with portal.client() as browser:
        csrf = await portal.sign_in(browser, "tech")
        started = await browser.post(
            f"/api/v1/devices/{portal.world.device['on']}/remote-sessions",
            headers={"X-CSRF-Token": csrf, "Origin": BASE})
    await settle(portal.world)
    return {**started.json(), "http_status": started.status_code}


async def test_heartbeat_places_sessions_draining_refuses_and_stopped_ends(
        portal: Portal) -> None:
    world = portal.world
    # several sessions of one technician on one device: placement, not quotas, is tested
    await world.set_policy(max_sessions_per_device=8, max_sessions_per_user_per_device=8)
    async with portal.client() as http:
        x = _heartbeat(portal, http, "relay-x")
        assert await x.beat() and x.accepted == 1
        assert x.interval == portal.rt.sessions.relay_health.interval
        first = await _start(portal)
        assert first["http_status"] == 201 and ".rt.localhost:8443/" in first["url"]
        x.set_draining(world.clock.now.timestamp() + 600)
        assert await x.beat()
        legacy = await _start(portal)  # relay-y never heartbeated: the fallback
        assert legacy["http_status"] == 201 and "rt2.localhost/" in legacy["url"]
        y = _heartbeat(portal, http, "relay-y")
        y.set_draining(world.clock.now.timestamp() + 600)
        assert await y.beat()
        refused = await _start(portal)
        assert refused["http_status"] == 409 and refused["error"]["code"] == "no_relay"
        assert "draining" in refused["error"]["message"]
        assert await x.stopped()
    async with portal.client() as browser:
        await portal.sign_in(browser, "tech")
        got = (await browser.get(f"/api/v1/remote-sessions/{first['session_id']}")).json()
    assert got["status"] == "ended"
    assert got["reason"].startswith("relay_drained: relay 'relay-x'")


async def test_heartbeat_with_a_wrong_secret_or_state_is_refused(portal: Portal) -> None:
    async with portal.client() as http:
        wrong = _heartbeat(portal, http, "relay-x", secret="ewsr_not-the-secret")
        assert not await wrong.beat()
        answer = await http.post("/api/v1/relay/heartbeat", json={"state": "asleep"},
                                 auth=(str(portal.world.relays["relay-x"]),
                                       portal.world.relay_secrets["relay-x"]))
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "state"
        no_deadline = await http.post("/api/v1/relay/heartbeat", json={"state": "draining"},
                                      auth=(str(portal.world.relays["relay-x"]),
                                            portal.world.relay_secrets["relay-x"]))
        assert no_deadline.status_code == 422
        assert "drain_deadline_unix" in no_deadline.json()["error"]["message"]
