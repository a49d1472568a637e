"""The customer policy at the relay: read-only sessions and the idle timeout, over real TLS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ewsgate.relay.clock import ManualClock
from ewsgate.relay.session_policy import SessionPolicy

from .helpers import FakePortal, RawServer, Relay, Seen, device_app, spool_entries

pytestmark = pytest.mark.integration


def _ok(request, body):
    return 200, [("Content-Type", "text/plain")], b"done"


@pytest.mark.parametrize(("claims", "expected"), [
    ({}, SessionPolicy()),
    ({"pol": {"mode": "full", "idle": 600, "panel": True}},
     SessionPolicy(read_only=False, idle_timeout=600.0, allow_panel=True)),
    ({"pol": {"mode": "read-only", "idle": 120, "panel": False}},
     SessionPolicy(read_only=True, idle_timeout=120.0, allow_panel=False)),
    # a malformed policy is read as the strictest, never as "no policy"
    ({"pol": "full"}, SessionPolicy(read_only=True, idle_timeout=60.0, allow_panel=False)),
    ({"pol": {"mode": "FULL", "idle": "x"}},
     SessionPolicy(read_only=True, idle_timeout=60.0, allow_panel=False)),
])
def test_the_tickets_policy_claim(claims: dict, expected: SessionPolicy) -> None:
    assert SessionPolicy.from_claims(claims) == expected


def test_read_only_lets_reads_and_the_allowed_panel_through() -> None:
    policy = SessionPolicy(read_only=True, allow_panel=True)
    assert policy.refusal(b"GET", websocket=False) is None
    assert policy.refusal(b"HEAD", websocket=False) is None
    assert policy.refusal(b"GET", websocket=True) is None
    for method in (b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"):
        assert "not sent" in (policy.refusal(method, websocket=False) or "")
    assert "panel" in (SessionPolicy(read_only=True, allow_panel=False).refusal(
        b"GET", websocket=True) or "")


async def test_a_read_only_session_refuses_a_settings_post_and_logs_it(
        tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/settings": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port, policy=SessionPolicy(read_only=True))
        cookie = await relay.login(sid)
        response = await relay.fetch(sid, "GET", "/settings", cookie=cookie)
        assert response.status == 200 and response.body == b"done"
        response = await relay.fetch(sid, "POST", "/settings", body=b"toner=0", cookie=cookie,
                                     headers=[("Sec-Fetch-Site", "same-origin")])
        assert response.status == 403
        assert b"read-only" in response.body and b"POST would change the device" in response.body
        # a hostile page's GET that asks the device to treat it as a POST is refused too
        response = await relay.fetch(sid, "GET", "/settings?toner=0", cookie=cookie,
                                     headers=[("X-HTTP-Method-Override", "POST")])
        assert response.status == 403 and b"another method" in response.body
        assert [req.method for req, _ in seen.requests] == [b"GET"]
        for _ in range(50):
            refused = [e for e in spool_entries(relay.spool) if e["method"] == "POST"]
            if refused:
                break
            await asyncio.sleep(0.05)
        assert refused and refused[0]["outcome"] == "refused"
        assert any(e["url"] == "/settings?toner=0" and e["outcome"] == "refused"
                   for e in spool_entries(relay.spool))
        assert refused[0]["status"] == 403 and refused[0]["url"] == "/settings"


async def test_the_idle_timeout_ends_the_session_at_the_relay(
        tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    clock = ManualClock(start=time.time())
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal, clock=clock) as relay:
        sid = relay.add_device(device.port, policy=SessionPolicy(idle_timeout=120.0))
        cookie = await relay.login(sid)
        assert (await relay.fetch(sid, "GET", "/", cookie=cookie)).status == 200
        clock.advance(100)  # a request inside the window keeps it alive
        assert (await relay.fetch(sid, "GET", "/", cookie=cookie)).status == 200
        clock.advance(119)
        assert (await relay.fetch(sid, "GET", "/", cookie=cookie)).status == 200
        clock.advance(121)
        for _ in range(50):  # the watcher runs on the relay's clock
            if sid in relay.proxy._ended:
                break
            await asyncio.sleep(0.02)
        assert sid in relay.proxy._ended
        response = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert response.status == 410 and b"session_ended" in response.body
        assert len(seen.requests) == 3
