"""Customer policy enforced in the service layer: reason, hours, quotas, approval by a named
Customer Approver (one session per approval), expiry, denial with a reason, scope (404), and
the session events notifiers subscribe to."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ewsgate.portal.services import policies
from ewsgate.portal.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ewsgate.portal.sessions.events import (
    SessionApproved,
    SessionDenied,
    SessionEnded,
    SessionRequested,
    SessionStarted,
)
from ewsgate.portal.sessions.gate import Purpose
from ewsgate.portal.sessions.requests import SessionRequests
from ewsgate.portal.store.models import Job, RemoteSession
from sessions.rt_world import RtWorld, settle

pytestmark = pytest.mark.db


def _requests(rt: RtWorld) -> SessionRequests:
    return SessionRequests(rt.sessions)


async def test_a_required_reason_is_asked_for_and_recorded_on_the_job(rt: RtWorld) -> None:
    await rt.set_policy(reason="required")
    tech = await rt.actor("tech")
    with pytest.raises(InvalidInput) as info:
        await rt.sessions.create(tech, rt.device["on"])
    assert info.value.code == "reason_required" and "reason" in info.value.message
    view = await rt.sessions.create(tech, rt.device["on"],
                                    Purpose(reason="toner error 10.22", ticket="INC-7"))
    await settle(rt)
    async with rt.db.transaction() as s:
        job = await s.get(Job, view.job_id)
        assert job is not None and job.result is not None
        assert job.result["purpose"] == {"reason": "toner error 10.22", "ticket": "INC-7",
                                         "read_only": False}


async def test_outside_the_customers_hours_no_session_starts(rt: RtWorld) -> None:
    # T0 is Saturday 2026-11-28 12:00 UTC; allow only Monday to Friday in São Paulo
    await rt.set_policy(hours=[{"timezone": "America/Sao_Paulo", "windows": [
        {"day": d, "start": "08:00", "end": "18:00"} for d in ("mon", "tue", "wed", "thu",
                                                              "fri")]}])
    with pytest.raises(Conflict) as info:
        await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    assert info.value.code == "outside_hours" and "America/Sao_Paulo" in info.value.message
    rt.clock.advance(2 * 86400)  # Monday 12:00 UTC = 09:00 in São Paulo
    await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)


async def test_quotas_per_user_and_per_device(rt: RtWorld) -> None:
    tech, tech2 = await rt.actor("tech"), await rt.actor("tech2")
    await rt.sessions.create(tech, rt.device["on"])
    with pytest.raises(Conflict) as info:
        await rt.sessions.create(tech, rt.device["on"])
    assert info.value.code == "quota_user"
    await rt.sessions.create(tech2, rt.device["on"])  # another user: their own quota
    await settle(rt)


async def test_the_device_quota_refuses_a_third_user(rt: RtWorld) -> None:
    await rt.set_policy(max_sessions_per_device=2)
    await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await rt.sessions.create(await rt.actor("tech2"), rt.device["on"])
    await rt.set_policy(max_sessions_per_device=2, max_sessions_per_user_per_device=1)
    with pytest.raises(Conflict) as info:
        await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    assert info.value.code == "quota_device"
    await settle(rt)


async def test_approval_required_waits_for_a_named_approver_and_opens_one_session(
        rt: RtWorld) -> None:
    await rt.set_policy(approval="required", reason="required")
    events: list[object] = []
    rt.sessions.events.subscribe(events.append)
    requests = _requests(rt)
    tech = await rt.actor("tech")
    with pytest.raises(Conflict) as info:
        await rt.sessions.create(tech, rt.device["on"], Purpose(reason="x"))
    assert info.value.code == "approval_required"
    outcome = await requests.ask(tech, rt.device["on"],
                                 Purpose(reason="paper jam", ticket="T-1", read_only=True))
    assert outcome.session is None and outcome.request is not None
    pending = outcome.request
    assert pending.status == "pending" and pending.expires_at == rt.clock.now + timedelta(
        minutes=15)
    approver = await rt.actor("approverA")
    assert [r.id for r in await requests.list(approver)] == [pending.id]
    assert (await requests.list(await rt.actor("approverB"))) == []
    with pytest.raises(NotFound):
        await requests.approve(await rt.actor("approverB"), pending.id)
    with pytest.raises(PermissionDenied):
        await requests.approve(await rt.actor("viewer"), pending.id)
    view, session = await requests.approve(approver, pending.id, "ok for today")
    await settle(rt)
    assert view.status == "used" and view.decided_by == "approvera@example.com"
    assert view.session_id == session.session_id and session.user_id == rt.users["tech"]
    with pytest.raises(Conflict):  # one session per approval
        await requests.approve(approver, pending.id)
    async with rt.db.transaction() as s:
        row = await s.get(RemoteSession, session.session_id)
        job = await s.get(Job, session.job_id)
        assert row is not None and job is not None and job.result is not None
        assert row.mode == "read-only" and row.idle_timeout_seconds == 600
        assert job.result["approval"]["approved_by"] == "approvera@example.com"
        assert job.result["purpose"]["reason"] == "paper jam"
    kinds = [type(e) for e in events]
    assert kinds[:3] == [SessionRequested, SessionStarted, SessionApproved]
    await rt.sessions.end(tech, session.session_id)
    assert any(isinstance(e, SessionEnded) for e in events)


async def test_a_denied_request_says_who_denied_it_and_why(rt: RtWorld) -> None:
    await rt.set_policy(approval="required")
    requests = _requests(rt)
    tech = await rt.actor("tech")
    pending = (await requests.ask(tech, rt.device["on"], Purpose())).request
    assert pending is not None
    with pytest.raises(InvalidInput):
        await requests.deny(await rt.actor("approverA"), pending.id, "  ")
    with pytest.raises(PermissionDenied) as info:  # a technician answers nothing
        await requests.deny(tech, pending.id, "no")
    denied = await requests.deny(await rt.actor("approverA"), pending.id,
                                 "month-end printing; try tomorrow")
    seen = await requests.get(tech, pending.id)
    assert seen == denied
    assert (seen.status, seen.decided_by, seen.decision_reason) == (
        "denied", "approvera@example.com", "month-end printing; try tomorrow")
    with pytest.raises(NotFound):  # nobody outside customer A sees it
        await requests.get(await rt.actor("techB"), pending.id)
    with pytest.raises(NotFound):
        await requests.get(await rt.actor("viewerB"), pending.id)
    assert (await requests.get(await rt.actor("viewer"), pending.id)).status == "denied"
    assert info.value.code == "forbidden"  # a technician has no approve_session


async def test_an_unanswered_request_expires(rt: RtWorld) -> None:
    await rt.set_policy(approval="required", approval_expiry_minutes=5)
    events: list[object] = []
    rt.sessions.events.subscribe(events.append)
    requests = _requests(rt)
    pending = (await requests.ask(await rt.actor("tech"), rt.device["on"], Purpose())).request
    assert pending is not None
    rt.clock.advance(5 * 60)
    assert await requests.expire() == 1
    with pytest.raises(Conflict):
        await requests.approve(await rt.actor("approverA"), pending.id)
    assert (await requests.get(await rt.actor("tech"), pending.id)).status == "expired"
    assert isinstance(events[-1], SessionDenied) and events[-1].denied_by is None


async def test_a_failing_subscriber_does_not_stop_the_session(rt: RtWorld) -> None:
    def broken(_event: object) -> None:
        raise RuntimeError("smtp down")
    seen: list[object] = []
    rt.sessions.events.subscribe(broken)
    rt.sessions.events.subscribe(seen.append)
    await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    assert any(isinstance(e, SessionStarted) for e in seen)


async def test_a_child_customer_cannot_loosen_its_parents_policy(rt: RtWorld) -> None:
    async with rt.db.transaction() as s:
        from ewsgate.portal.store.models import Customer, Installation
        child = Customer(dealer_id=rt.dealer, parent_id=rt.customer["A"], name="A child",
                         created_at=rt.clock.now)
        s.add(child)
        await s.flush()
        installation = await s.get(Installation, rt.installation)
        assert installation is not None
        installation.customer_id = child.id
        child_id = child.id
    await rt.set_policy(approval="required", mode="read-only")
    admin = await rt.actor("admin")
    async with rt.db.transaction() as s:
        await policies.set_policy(s, admin, child_id, {"approval": "none", "mode": "full",
                                                       "idle_timeout_minutes": 3})
        got = await policies.get_effective_policy(s, admin, child_id)
        assert got.as_json()["approval"] == "required" and got.as_json()["mode"] == "read-only"
        assert got.idle_timeout_minutes == 3
        with pytest.raises(PermissionDenied):
            await policies.set_policy(s, await rt.actor("approverA"), child_id, {})
        with pytest.raises(NotFound):
            await policies.get_policy(s, await rt.actor("approverB"), child_id)
        assert (await policies.get_policy(s, await rt.actor("approverA"), child_id)
                ).idle_timeout_minutes == 3
    with pytest.raises(Conflict) as info:
        await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    assert info.value.code == "approval_required"


async def test_requests_and_answers_queue_notifications_in_their_own_transaction(
        rt: RtWorld) -> None:
    """The approver hears of a pending request, the customer's contacts of its answer: queued
    in the outbox with the change itself (ewsgate.portal.notifications)."""
    from sqlalchemy import select

    from ewsgate.portal.store.models import CustomerContacts, Notification

    await rt.set_policy(approval="required")
    async with rt.db.transaction() as s:
        s.add(CustomerContacts(customer_id=rt.customer["A"], emails=["it@customer-a.example"],
                               updated_at=rt.clock.now))

    async def queued() -> list[tuple[str, str, str | None]]:
        async with rt.db.transaction() as s:
            rows = (await s.scalars(select(Notification).order_by(Notification.id))).all()
            return [(r.kind, r.target, r.payload.get("approver_email")) for r in rows
                    if r.kind.startswith("session_") and r.kind != "session_started"
                    and r.kind != "session_ended"]

    requests = _requests(rt)
    tech = await rt.actor("tech")
    first = (await requests.ask(tech, rt.device["on"], Purpose(reason="jam"))).request
    assert first is not None
    asked = await queued()
    assert {kind for kind, _, _ in asked} == {"session_requested"}
    # the customer's approvers (and administrators over it), never another customer's
    assert "approvera@example.com" in {target for _, target, _ in asked}
    assert "approverb@example.com" not in {target for _, target, _ in asked}
    approver = await rt.actor("approverA")
    _, opened = await requests.approve(approver, first.id, "go ahead")
    await settle(rt)
    await rt.sessions.end(tech, opened.session_id)  # room for the next request (quota 1)
    await settle(rt)
    assert (await queued())[len(asked):] == [
        ("session_approved", "it@customer-a.example", "approvera@example.com")]
    second = (await requests.ask(tech, rt.device["on"], Purpose(reason="again"))).request
    assert second is not None
    await requests.deny(approver, second.id, "not today")
    assert (await queued())[-1] == (
        "session_denied", "it@customer-a.example", "approvera@example.com")
