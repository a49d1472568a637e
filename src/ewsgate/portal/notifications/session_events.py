"""Session lifecycle → notification events, queued in the transaction of the change.

* ``session_started`` when a session becomes ``ready`` (:meth:`RemoteSessions.move`);
* ``session_ended`` when the teardown of a session that had been ready claims its job
  (:meth:`RemoteSessions.teardown`). Teardown is where every end meets — the owner's *End*,
  an administrator's termination, expiry, the device switched off, a revocation, a failure —
  and it claims each job once across replicas, so each session ends in one event. A session
  that failed before it opened was never started: the contacts hear nothing of it.

The approval workflow's events (``session_requested``, ``session_approved``,
``session_denied``) are one :func:`~.outbox.notify` call each where a request is made and
answered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.notifications.outbox import notify
from ewsgate.portal.store.models import Job, Notification, RemoteSession

__all__ = ["session_ended", "session_started"]


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
