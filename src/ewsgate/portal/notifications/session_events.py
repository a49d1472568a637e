"""Session lifecycle → notification events, queued in the transaction of the change.

* ``session_started`` when a session becomes ``ready`` (:meth:`RemoteSessions.move`);
* ``session_ended`` when the teardown of a session that had been ready claims its job
  (:meth:`RemoteSessions.teardown`). Teardown is where every end meets — the owner's *End*,
  an administrator's termination, expiry, the device switched off, a revocation, a failure —
  and it claims each job once across replicas, so each session ends in one event. A session
  that failed before it opened was never started: the contacts hear nothing of it.

The approval workflow's events go through :func:`request_event`, in the transaction that makes
or answers the request (:mod:`ewsgate.portal.sessions.requests`): ``session_requested`` for
the customer's approvers, ``session_approved`` (once the approved session exists) and
``session_denied`` (also when a request expires unanswered) for its contacts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.notifications.outbox import notify
from ewsgate.portal.notifications.recipients import approver_emails
from ewsgate.portal.store.models import Job, Notification, RemoteSession, SessionRequest

__all__ = ["request_event", "session_ended", "session_started"]


def _facts(row: RemoteSession, job: Job, now: datetime) -> dict[str, Any]:
    return {"session_id": row.id, "job_id": job.id, "device_id": row.device_id,
            "device_name": job.device_name, "user_email": job.user_email,
            "at": now.isoformat()}


async def session_started(session: AsyncSession, row: RemoteSession, job: Job, *,
                          now: datetime) -> list[Notification]:
    """Queue ``session_started`` for the session's customer."""
    data = {**_facts(row, job, now), "expires_at": row.expires_at.isoformat()}
    return await notify(session, "session_started", dealer_id=job.dealer_id,
                        customer_id=job.customer_id, data=data, now=now)


async def session_ended(session: AsyncSession, row: RemoteSession, job: Job, *,
                        now: datetime) -> list[Notification]:
    """Queue ``session_ended`` if the session had been ready (else nothing)."""
    timeline = (job.result or {}).get("timeline", {})
    if "ready" not in timeline:
        return []
    data = {**_facts(row, job, row.ended_at or now), "status": row.status,
            "ended_reason": row.reason, "started_at": timeline["ready"]}
    return await notify(session, "session_ended", dealer_id=job.dealer_id,
                        customer_id=job.customer_id, data=data, now=now)


async def request_event(session: AsyncSession, kind: str, request: SessionRequest, *,
                        now: datetime, decided_by: str | None = None,
                        note: str | None = None) -> list[Notification]:
    """Queue ``session_requested`` (for the customer's approvers) or ``session_approved`` /
    ``session_denied`` (for its contacts) for ``request``, in the caller's transaction."""
    data: dict[str, Any] = {
        "request_id": request.id, "device_id": request.device_id,
        "device_name": request.device_name, "user_email": request.user_email,
        "reason": request.reason, "ticket": request.ticket, "read_only": request.read_only,
        "expires_at": request.expires_at.isoformat(), "at": now.isoformat()}
    if decided_by is not None:
        data["approver_email"] = decided_by
    if note:
        data["note"] = note
    approvers: list[str] = []
    if kind == "session_requested" and request.customer_id is not None:
        approvers = await approver_emails(session, dealer_id=request.dealer_id,
                                          customer_id=request.customer_id)
    return await notify(session, kind, dealer_id=request.dealer_id,
                        customer_id=request.customer_id, data=data, now=now,
                        approver_emails=approvers)

