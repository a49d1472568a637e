"""``SessionFailed`` over the real control stream (mTLS, grpcio): an agent's report fails its
own installation's live session with the reason; another installation's report about it
changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from ewsgate.portal.store.models import Job, RemoteSession

from .conftest import eventually, utc_now
from .test_verify_identity import add_device

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def _live_session(db, device_id: int, dealer_id: int) -> str:  # type: ignore[no-untyped-def]
    async with db.transaction() as s:
        job = Job(type="open_device_web_page", status="running", dealer_id=dealer_id,
                  device_id=device_id, created_at=utc_now())
        s.add(job)
        await s.flush()
        s.add(RemoteSession(id="s" * 32, job_id=job.id, device_id=device_id,
                            host="s-x.rt.localhost", url="https://s-x.rt.localhost/",
                            redirect_uri="https://s-x.rt.localhost/.ewsgate/callback",
                            status="ready", created_at=utc_now(), expires_at=utc_now()))
    return "s" * 32


async def _status(db, session_id: str) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    async with db.transaction() as s:
        row = await s.get(RemoteSession, session_id)
        assert row is not None
        return row.status, row.reason


async def test_agent_report_fails_only_its_own_installations_session(portal, enrol, agents, db):
    mine, other = await enrol("mine"), await enrol("other")
    agent_mine, agent_other = agents(mine.state), agents(other.state)
    for agent in (agent_mine, agent_other):
        await asyncio.wait_for(agent.client.connected.wait(), 10)
    device_id, dealer_id = await add_device(db, mine.installation_id, 161)
    session_id = await _live_session(db, device_id, dealer_id)

    agent_other.client.report_session_failed(session_id, "serial_mismatch", "not yours")
    await asyncio.sleep(0.5)  # delivered and ignored
    assert await _status(db, session_id) == ("ready", None)

    detail = ("the device was re-verified (tunnel reconnect) and the check failed: device "
              "identity mismatch at 127.0.0.1: expected serial CNBRM5K0QZ, found ROGUE")
    agent_mine.client.report_session_failed(session_id, "serial_mismatch", detail)

    async def failed() -> bool:
        return (await _status(db, session_id))[0] == "failed"

    await eventually(failed)
    assert await _status(db, session_id) == ("failed", f"serial_mismatch: {detail}")
