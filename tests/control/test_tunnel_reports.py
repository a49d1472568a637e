"""Tunnel reports over the real control stream: recorded on the job, checked, rate-limited."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from ewsgate.portal.store.models import Customer, Device, Installation, Job, RemoteSession
from ewsgate.portal.store.models import TunnelReport as ReportRow

from .conftest import eventually, utc_now

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def _session_of(db, installation_id: int, session_id: str) -> int:
    """A device, job and Remote Technician session of ``installation_id``; returns the job id."""
    now = utc_now()
    async with db.transaction() as s:
        installation = await s.get(Installation, installation_id)
        customer = await s.get(Customer, installation.customer_id)
        device = Device(installation_id=installation_id, name="Printer", ip="192.0.2.10",
                        ews_endpoints=[{"scheme": "http", "port": 80}], created_at=now,
                        updated_at=now)
        s.add(device)
        await s.flush()
        job = Job(type="open_device_web_page", status="running", dealer_id=customer.dealer_id,
                  customer_id=customer.id, device_id=device.id, created_at=now)
        s.add(job)
        await s.flush()
        s.add(RemoteSession(id=session_id, job_id=job.id, device_id=device.id,
                            host=f"s-{session_id}.rt.localhost", url="https://x/",
                            redirect_uri="https://x/.ewsgate/callback", status="ready",
                            created_at=now, expires_at=now + dt.timedelta(minutes=30)))
        return job.id


async def _rows(db) -> list[ReportRow]:
    async with db.transaction() as s:
        return list((await s.scalars(select(ReportRow).order_by(ReportRow.id))).all())


async def test_a_report_is_recorded_on_the_sessions_job(portal, enrol, agents, db):
    enrolled = await enrol()
    job_id = await _session_of(db, enrolled.installation_id, "sess-a")
    agent = agents(enrolled.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    agent.client.send_tunnel_report(
        session_id="sess-a", kind="protocol_violation", code="ENHANCE_YOUR_CALM",
        detail="the peer sent more streams opened and reset\r\n before they were accepted",
        count=3, budget="early_resets")

    async def stored():
        return await _rows(db)

    await eventually(stored)
    [row] = await _rows(db)
    assert (row.job_id, row.kind, row.code, row.budget, row.count) == (
        job_id, "protocol_violation", "ENHANCE_YOUR_CALM", "early_resets", 3)
    assert "\r" not in row.detail and "\n" not in row.detail
    assert row.installation_id == enrolled.installation_id


async def test_another_installations_session_and_unknown_versions_are_ignored(
        portal, enrol, agents, db):
    owner, other = await enrol("owner"), await enrol("other")
    await _session_of(db, owner.installation_id, "sess-b")
    agent = agents(other.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    agent.client.send_tunnel_report(session_id="sess-b", kind="relay_cut",
                                    code="ENHANCE_YOUR_CALM", detail="forged", count=1)
    from ewsgate.proto import control_pb2 as pb

    agent.client._outbox.append(pb.AgentMessage(tunnel_report=pb.TunnelReport(
        version=2, session_id="sess-b", kind="relay_cut", code="X", count=1)))
    agent.client._wakeup.set()
    # a later, valid report of the owner proves the earlier ones were processed, not pending
    owner_agent = agents(owner.state)
    await asyncio.wait_for(owner_agent.client.connected.wait(), 10)
    await asyncio.sleep(0.5)
    owner_agent.client.send_tunnel_report(session_id="sess-b", kind="stream_refused",
                                          code="REFUSED_STREAM", detail="over 32", count=1)

    async def stored():
        return await _rows(db)

    await eventually(stored)
    await asyncio.sleep(0.3)
    assert [(r.kind, r.installation_id) for r in await _rows(db)] == [
        ("stream_refused", owner.installation_id)]


async def test_a_report_flood_is_capped_per_installation(portal, enrol, agents, db):
    enrolled = await enrol()
    await _session_of(db, enrolled.installation_id, "sess-c")
    agent = agents(enrolled.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    started = asyncio.get_running_loop().time()
    for i in range(200):
        agent.client.send_tunnel_report(session_id="sess-c", kind="destination_refused",
                                        code="DESTINATION_REFUSED", detail=f"index {i}", count=1)

    async def drained():
        return not agent.client._outbox

    await eventually(drained)
    await asyncio.sleep(0.5)
    stored = len(await _rows(db))
    elapsed = asyncio.get_running_loop().time() - started
    assert 20 <= stored <= 20 + int(elapsed) + 1, (stored, elapsed)  # the burst, plus 1/s


async def test_a_relay_cut_fails_the_live_session_with_the_agents_reason(
        portal, enrol, agents, db):
    enrolled = await enrol()
    job_id = await _session_of(db, enrolled.installation_id, "sess-d")
    agent = agents(enrolled.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    agent.client.send_tunnel_report(
        session_id="sess-d", kind="relay_cut", code="ENHANCE_YOUR_CALM",
        detail="the relay kept breaking the agent's rules in this session", count=1)

    async def failed():
        async with db.transaction() as s:
            return (await s.get(RemoteSession, "sess-d")).status == "failed"

    await eventually(failed)
    async with db.transaction() as s:
        row = await s.get(RemoteSession, "sess-d")
        assert row.reason.startswith("relay_cut: the relay kept breaking")
        assert row.ended_at is not None
        assert (await s.get(Job, job_id)).status == "running"  # the sweep finishes it
    # a later cut report does not overwrite the first outcome
    agent.client.send_tunnel_report(session_id="sess-d", kind="relay_cut",
                                    code="ENHANCE_YOUR_CALM", detail="second", count=1)

    async def two_reports():
        return len(await _rows(db)) == 2

    await eventually(two_reports)
    async with db.transaction() as s:
        assert "second" not in (await s.get(RemoteSession, "sess-d")).reason
