"""The session lifecycle: who may start one, what it sends, how it moves, how it ends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from ewsgate.portal.oauth.tokens import verify_tunnel_ticket
from ewsgate.portal.services import devices as device_service
from ewsgate.portal.services.errors import Conflict, NotFound, PermissionDenied
from ewsgate.portal.store.models import Device, Job, RemoteSession
from sessions.rt_world import ISSUER, RtWorld, settle

pytestmark = pytest.mark.db


async def _job(rt: RtWorld, job_id: int) -> Job:
    async with rt.db.transaction() as s:
        job = await s.get(Job, job_id)
        assert job is not None
        return job


async def test_user_starts_a_session_and_it_becomes_ready(rt: RtWorld) -> None:
    actor = await rt.actor("tech")
    view = await rt.sessions.create(actor, rt.device["on"])
    assert view.status == "verifying"
    assert view.expires_at == rt.clock.now + timedelta(minutes=30)
    assert view.url == f"https://s-{view.session_id}.rt.localhost:8443/"
    await settle(rt)
    got = await rt.sessions.get(actor, view.session_id)
    assert got.status == "ready"
    job = await _job(rt, view.job_id)
    assert job.type == "open_device_web_page" and job.status == "running"
    assert job.user_id == rt.users["tech"] and job.result["session_id"] == view.session_id
    body = view.as_json(rt.clock.now)
    assert {"session_id", "job_id", "url", "status", "expires_at"} <= set(body)
    assert body["expires_in"] == 1800


async def test_open_session_payload_and_ticket(rt: RtWorld) -> None:
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    [command] = [c for c in rt.hub.sent if c.kind == "OpenSession"]
    assert command.installation_id == rt.installation
    payload = command.payload
    assert payload["session_id"] == view.session_id
    assert payload["device"] == {"ip": "192.0.2.10", "hostname": "printer.lan",
                                 "endpoints": [{"scheme": "http", "port": 80},
                                               {"scheme": "https", "port": 443}]}
    identity = payload["identity"]  # exactly what VerifyDevice takes
    assert identity["expected_mac"] == "00:1b:a9:00:00:01" and identity["method"] == "mac"
    assert identity["ip"] == "192.0.2.10" and identity["snmp"]["community"] == "public"
    assert payload["relay"]["tunnel_address"] == "127.0.0.1:8444"
    claims = verify_tunnel_ticket(payload["ticket"], rt.keys.public_key_set(), issuer=ISSUER,
                                  audience=str(view.relay_id),
                                  now=int(rt.clock.now.timestamp()))
    assert claims["sub"] == str(rt.installation) and claims["sid"] == view.session_id
    assert claims["exp"] == int(view.expires_at.timestamp())
    assert claims["dev"] == {"ip": "192.0.2.10", "hostname": "printer.lan",
                             "endpoints": payload["device"]["endpoints"]}


@pytest.mark.parametrize("who", ["viewer", "configurer", "admin"])
async def test_only_a_remote_technician_user_may_start(rt: RtWorld, who: str) -> None:
    with pytest.raises(PermissionDenied):
        await rt.sessions.create(await rt.actor(who), rt.device["on"])


async def test_user_outside_scope_sees_nothing(rt: RtWorld) -> None:
    with pytest.raises(NotFound):
        await rt.sessions.create(await rt.actor("techB"), rt.device["on"])


async def test_disabled_device_is_refused(rt: RtWorld) -> None:
    with pytest.raises(Conflict) as info:
        await rt.sessions.create(await rt.actor("tech"), rt.device["off"])
    assert info.value.code == "remote_technician_disabled"
    assert rt.hub.sent == []


async def test_identity_mismatch_fails_the_session_and_the_job(rt: RtWorld) -> None:
    rt.hub.script = [("progress", "snmp"),
                     ("fail", "identity_mismatch",
                      "device identity mismatch at 192.0.2.10: expected MAC 00:1b:a9:00:00:01")]
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    got = await rt.sessions.get(await rt.actor("tech"), view.session_id)
    assert got.status == "failed" and got.reason.startswith("identity_mismatch")
    job = await _job(rt, view.job_id)
    assert job.status == "failed" and "identity mismatch" in job.error


async def test_progress_moves_through_connecting(rt: RtWorld) -> None:
    rt.hub.script = [("progress", "verifying"), ("progress", "connecting"), ("wait",),
                     ("ok", {})]
    actor = await rt.actor("tech")
    view = await rt.sessions.create(actor, rt.device["on"])
    for _ in range(100):
        if (await rt.sessions.get(actor, view.session_id)).status == "connecting":
            break
        await asyncio.sleep(0.01)
    assert (await rt.sessions.get(actor, view.session_id)).status == "connecting"
    rt.hub.release()
    await settle(rt)
    assert (await rt.sessions.get(actor, view.session_id)).status == "ready"


async def test_late_progress_never_moves_backwards_or_revives(rt: RtWorld) -> None:
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    from ewsgate.portal.sessions.status import SessionStatus

    assert not await rt.sessions.move(view.session_id, SessionStatus.CONNECTING)
    await rt.sessions.end(await rt.actor("tech"), view.session_id)
    assert not await rt.sessions.move(view.session_id, SessionStatus.READY)
    got = await rt.sessions.get(await rt.actor("tech"), view.session_id)
    assert got.status == "ended"


async def test_owner_ends_session_job_completes_and_close_is_sent(rt: RtWorld) -> None:
    actor = await rt.actor("tech")
    view = await rt.sessions.create(actor, rt.device["on"])
    await settle(rt)
    ended = await rt.sessions.end(actor, view.session_id)
    assert ended.status == "ended" and ended.reason == "ended by its owner"
    await settle(rt)
    assert "CloseSession" in rt.hub.kinds()
    close = next(c for c in rt.hub.sent if c.kind == "CloseSession")
    assert close.payload["session_id"] == view.session_id
    job = await _job(rt, view.job_id)
    assert job.status == "completed" and job.finished_at == rt.clock.now


async def test_administrator_terminates_any_session(rt: RtWorld) -> None:
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    admin = await rt.actor("admin")
    assert [v.session_id for v in await rt.sessions.list_live(admin)] == [view.session_id]
    ended = await rt.sessions.end(admin, view.session_id)
    assert ended.status == "ended" and "administrator" in (ended.reason or "")


async def test_another_user_cannot_end_or_list_the_session(rt: RtWorld) -> None:
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    other = await rt.actor("tech2")
    with pytest.raises(PermissionDenied):
        await rt.sessions.end(other, view.session_id)
    assert await rt.sessions.list_live(other) == []
    with pytest.raises(NotFound):
        await rt.sessions.end(await rt.actor("adminB"), view.session_id)
    with pytest.raises(NotFound):
        await rt.sessions.get(await rt.actor("techB"), view.session_id)


async def test_expiry_sweeper_ends_session_and_completes_job(rt: RtWorld) -> None:
    actor = await rt.actor("tech")
    view = await rt.sessions.create(actor, rt.device["on"])
    await settle(rt)
    rt.clock.advance(30 * 60 - 1)
    await rt.sessions.sweep()
    assert (await rt.sessions.get(actor, view.session_id)).status == "ready"
    rt.clock.advance(1.5)  # the sweeper runs a moment after expires_at
    await rt.sessions.sweep()
    got = await rt.sessions.get(actor, view.session_id)
    assert got.status == "ended" and "time limit" in (got.reason or "")
    assert got.ended_at == view.expires_at
    job = await _job(rt, view.job_id)
    assert job.status == "completed" and job.finished_at == view.expires_at
    await settle(rt)
    assert rt.hub.kinds().count("CloseSession") == 1
    await rt.sessions.sweep()
    assert rt.hub.kinds().count("CloseSession") == 1, "teardown happens once"


async def test_disabling_remote_technician_ends_live_sessions(rt: RtWorld) -> None:
    actor = await rt.actor("tech")
    view = await rt.sessions.create(actor, rt.device["on"])
    await settle(rt)
    async with rt.db.transaction() as s:
        await device_service.set_remote_technician(s, await rt.actor("configurer"),
                                                   rt.device["on"], False, clock=rt.clock)
    await rt.sessions.sweep()
    got = await rt.sessions.get(actor, view.session_id)
    assert got.status == "ended" and "disabled" in (got.reason or "")
    assert (await _job(rt, view.job_id)).status == "completed"
    await settle(rt)
    assert "CloseSession" in rt.hub.kinds()


async def test_stuck_open_fails_after_timeout(rt: RtWorld) -> None:
    rt.hub.script = [("wait",)]
    actor = await rt.actor("tech")
    view = await rt.sessions.create(actor, rt.device["on"])
    await asyncio.sleep(0.01)
    # simulate a portal restart: the task that ran OpenSession is gone
    rt.sessions._tasks.pop(view.session_id).cancel()
    rt.clock.advance(5 + 31)
    await rt.sessions.sweep()
    got = await rt.sessions.get(actor, view.session_id)
    assert got.status == "failed" and got.reason.startswith("open_timeout")


async def test_session_ids_are_distinct_and_relays_spread(rt: RtWorld) -> None:
    actor = await rt.actor("tech")
    await rt.set_policy(max_sessions_per_device=4, max_sessions_per_user_per_device=4)
    views = [await rt.sessions.create(actor, rt.device["on"]) for _ in range(4)]
    await settle(rt)
    assert len({v.session_id for v in views}) == 4
    assert {v.relay_id for v in views} == set(rt.relays.values())
    async with rt.db.transaction() as s:
        rows = (await s.scalars(select(RemoteSession))).all()
        for row in rows:
            assert row.redirect_uri == row.url + ".ewsgate/callback"


async def test_no_relay_registered_is_a_clear_error(rt: RtWorld) -> None:
    from ewsgate.portal.store.models import Relay

    async with rt.db.transaction() as s:
        for relay in (await s.scalars(select(Relay))).all():
            await s.delete(relay)
    with pytest.raises(Conflict) as info:
        await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    assert info.value.code == "no_relay" and "create-relay" in info.value.message


async def test_device_without_endpoint_is_refused(rt: RtWorld) -> None:
    async with rt.db.transaction() as s:
        device = await s.get(Device, rt.device["on"])
        device.ews_endpoints = []
    with pytest.raises(Conflict) as info:
        await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    assert info.value.code == "no_endpoint"


async def test_job_result_records_when_each_phase_happened(rt: RtWorld) -> None:
    """The timeline splits the time to a ready session into control, identity and tunnel."""
    rt.hub.script = [("progress", "verifying"), ("wait",), ("progress", "connecting"),
                     ("progress", "ready"), ("ok", {})]
    actor = await rt.actor("tech")
    t0 = rt.clock()
    view = await rt.sessions.create(actor, rt.device["on"])
    for _ in range(200):  # the agent's first report has arrived
        if "agent_verifying" in rt.sessions._timeline.get(view.session_id, {}):
            break
        await asyncio.sleep(0.01)
    rt.clock.advance(1.5)  # the identity check took 1.5 s
    rt.hub.release()
    await settle(rt)
    assert (await rt.sessions.get(actor, view.session_id)).status == "ready"
    timeline = (await _job(rt, view.job_id)).result["timeline"]
    at = t0.isoformat()
    later = (t0 + timedelta(seconds=1.5)).isoformat()
    assert timeline == {"created": at, "agent_verifying": at, "agent_connecting": later,
                        "connecting": later, "agent_ready": later, "ready": later}
    assert view.session_id not in rt.sessions._timeline  # nothing kept once ready
