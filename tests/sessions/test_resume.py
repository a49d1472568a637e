"""Restarts resume, or end honestly: when an installation's stream comes back, its live
sessions get ``OpenSession`` again with a fresh ticket; if that fails, they end ``failed`` with
"the installation restarted" on the job."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ewsgate.portal.oauth.tokens import verify_tunnel_ticket
from ewsgate.portal.store.models import Job
from sessions.rt_world import ISSUER, RtWorld, settle

pytestmark = pytest.mark.db


async def _ready_session(rt: RtWorld) -> tuple[str, int]:
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    assert (await rt.sessions.get(await rt.actor("tech"), view.session_id)).status == "ready"
    return view.session_id, view.job_id


def _opens(rt: RtWorld, session_id: str) -> list[dict[str, object]]:
    return [c.payload for c in rt.hub.sent
            if c.kind == "OpenSession" and c.payload["session_id"] == session_id]


async def test_a_returning_installation_gets_open_session_again_with_a_fresh_ticket(
        rt: RtWorld) -> None:
    session_id, job_id = await _ready_session(rt)
    rt.clock.advance(60)
    assert await rt.sessions.installation_connected(rt.installation) == 1
    await settle(rt)
    first, again = _opens(rt, session_id)
    assert again["ticket"] != first["ticket"]
    assert again["expires_at"] == first["expires_at"]  # the session's end does not move
    assert again["identity"] == first["identity"]  # the device is verified again
    claims = verify_tunnel_ticket(str(again["ticket"]), rt.keys.public_key_set(),
                                  issuer=ISSUER, audience=str(first["relay"]["id"]),  # type: ignore[index]
                                  now=int(rt.clock.now.timestamp()))
    assert claims["sid"] == session_id
    view = await rt.sessions.get(await rt.actor("tech"), session_id)
    assert view.status == "ready"
    async with rt.db.transaction() as s:
        job = await s.get(Job, job_id)
        assert job is not None and job.status == "running"


async def test_a_session_that_cannot_be_resumed_fails_saying_the_installation_restarted(
        rt: RtWorld) -> None:
    session_id, job_id = await _ready_session(rt)
    rt.hub.script = [("fail", "identity_mismatch", "the device at 192.0.2.10 is another one")]
    await rt.sessions.installation_connected(rt.installation)
    await settle(rt)
    view = await rt.sessions.get(await rt.actor("tech"), session_id)
    assert view.status == "failed"
    async with rt.db.transaction() as s:
        job = await s.get(Job, job_id)
        assert job is not None and job.status == "failed"
        assert job.error is not None and job.error.startswith("installation_restarted")
        assert "identity_mismatch" in job.error


async def test_expired_and_still_opening_sessions_are_not_resent(rt: RtWorld) -> None:
    rt.hub.script = [("wait",), ("ok", {})]
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    # its first OpenSession is still running here: nothing to resume
    assert await rt.sessions.installation_connected(rt.installation) == 0
    rt.hub.release()
    await settle(rt)
    rt.clock.advance(timedelta(minutes=31).total_seconds())
    assert await rt.sessions.installation_connected(rt.installation) == 0
    assert len(_opens(rt, view.session_id)) == 1
