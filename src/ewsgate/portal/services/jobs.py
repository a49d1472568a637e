"""Jobs and their logs (the Remote Technician Log).

A job records work done on a device for a user: ``open_device_web_page``,
``verify_identity``... Its status moves ``queued → running → completed | failed`` (a job may
also fail straight from ``queued``). A job is visible to anyone with a role over the customer
it was created under (copied from the device at creation, so it survives the device).

Reading is for actors (:func:`list_jobs`, :func:`get_job`, :func:`get_job_log`). Writing is
for the parts that run jobs, after they have checked access themselves (e.g. with
:func:`ewsgate.portal.services.devices.authorize_open_session`): :func:`create_job`,
:func:`start_job`, :func:`finish_job`, :func:`append_job_log`. Log entries are keyed by
``(job_id, seq)``; :func:`append_job_log` skips sequence numbers it already has, so a relay
can resend a batch after a crash without duplicating anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services.access import Action, Actor, Scope, load_tree, scope_for
from ewsgate.portal.services.errors import Conflict, InvalidInput, NotFound
from ewsgate.portal.store.models import (
    JOB_STATUSES,
    Customer,
    Device,
    Installation,
    Job,
    JobLogEntry,
    User,
)
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "JobFilter",
    "append_job_log",
    "create_job",
    "finish_job",
    "get_job",
    "get_job_log",
    "list_jobs",
    "start_job",
]

_TRANSITIONS = {
    "queued": {"running", "completed", "failed"},
    "running": {"completed", "failed"},
    "completed": set(),
    "failed": set(),
}
_LOG_FIELDS = frozenset({"seq", "at", "user_email", "method", "url", "status", "bytes_in",
                         "bytes_out", "duration_ms", "outcome", "detail", "client"})


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Filters for :func:`list_jobs`; all optional."""

    type: str | None = None
    status: str | None = None
    device_id: int | None = None
    user_id: int | None = None
    customer_id: int | None = None  # that customer's subtree
    since: datetime | None = None


def _visible(actor: Actor, scope: Scope) -> ColumnElement[bool]:
    """Jobs of the actor's dealer under a customer in ``scope``; a dealer-wide scope also sees
    jobs whose customer was deleted since (``customer_id`` NULL)."""
    if scope.dealer_wide:
        return Job.dealer_id == actor.dealer_id
    return (Job.dealer_id == actor.dealer_id) & Job.customer_id.in_(scope.customer_ids)


async def list_jobs(session: AsyncSession, actor: Actor, filters: JobFilter = JobFilter(), *,
                    limit: int = 100, offset: int = 0) -> list[Job]:
    """Jobs the actor can see, newest first."""
    if filters.status is not None and filters.status not in JOB_STATUSES:
        raise InvalidInput(f"status {filters.status!r} is not one of {', '.join(JOB_STATUSES)}",
                           field="status")
    tree = await load_tree(session, actor.dealer_id)
    visible = scope_for(actor, Action.VIEW, tree)
    if visible.empty:
        return []
    query: Select[Job] = select(Job).where(_visible(actor, visible))
    if filters.customer_id is not None:
        query = query.where(Job.customer_id.in_(tree.subtree(filters.customer_id)))
    for column, value in ((Job.type, filters.type), (Job.status, filters.status),
                          (Job.device_id, filters.device_id), (Job.user_id, filters.user_id)):
        if value is not None:
            query = query.where(column == value)
    if filters.since is not None:
        query = query.where(Job.created_at >= filters.since)
    query = query.order_by(Job.created_at.desc(), Job.id.desc())
    return list((await session.scalars(
        query.limit(max(1, min(limit, 1000))).offset(max(0, offset)))).all())


async def get_job(session: AsyncSession, actor: Actor, job_id: int) -> Job:
    """A job the actor can see, else :class:`NotFound`."""
    job = await session.get(Job, job_id)
    if job is None or job.dealer_id != actor.dealer_id:
        raise NotFound.of("job", job_id)
    tree = await load_tree(session, actor.dealer_id)
    if not scope_for(actor, Action.VIEW, tree).covers(job.customer_id):
        raise NotFound.of("job", job_id)
    return job


async def get_job_log(session: AsyncSession, actor: Actor, job_id: int, *,
                      after_seq: int | None = None, limit: int = 1000) -> list[JobLogEntry]:
    """The job's log in ``seq`` order; ``after_seq`` pages forward (live tailing)."""
    job = await get_job(session, actor, job_id)
    query = select(JobLogEntry).where(JobLogEntry.job_id == job.id)
    if after_seq is not None:
        query = query.where(JobLogEntry.seq > after_seq)
    query = query.order_by(JobLogEntry.seq).limit(max(1, min(limit, 10_000)))
    return list((await session.scalars(query)).all())


async def create_job(session: AsyncSession, *, type: str, device: Device,
                     user_id: int | None, clock: Clock = utc_now) -> Job:
    """A new ``queued`` job on ``device`` for ``user_id`` (no access check: callers check)."""
    customer_id = await session.scalar(
        select(Installation.customer_id).where(Installation.id == device.installation_id))

    dealer_id = await session.scalar(select(Customer.dealer_id).where(
        Customer.id == customer_id))
    if dealer_id is None:  # pragma: no cover - the FK chain guarantees it
        raise NotFound.of("device", device.id)
    user = await session.get(User, user_id) if user_id is not None else None
    job = Job(type=type, status="queued", dealer_id=dealer_id, customer_id=customer_id,
              device_id=device.id, device_name=device.name, user_id=user_id,
              user_email=user.email if user else None, created_at=clock())
    session.add(job)
    await session.flush()
    return job


def _move(job: Job, status: str) -> None:
    if status not in _TRANSITIONS.get(job.status, set()):
        raise Conflict(f"job {job.id} is {job.status}; it cannot become {status}",
                       code="job_state")
    job.status = status


async def start_job(session: AsyncSession, job: Job, *, clock: Clock = utc_now) -> Job:
    """``queued → running``, stamping ``started_at``."""
    _move(job, "running")
    job.started_at = clock()
    await session.flush()
    return job


async def finish_job(session: AsyncSession, job: Job, *, ok: bool,
                     result: Mapping[str, Any] | None = None, error: str | None = None,
                     clock: Clock = utc_now) -> Job:
    """``→ completed`` (``ok``) or ``→ failed`` with ``error``; stamps ``finished_at``.
    Finishing an already finished job is a :class:`Conflict` (``job_state``)."""
    _move(job, "completed" if ok else "failed")
    job.finished_at = clock()
    if result is not None:
        job.result = dict(result)
    job.error = error
    await session.flush()
    return job


async def append_job_log(session: AsyncSession, job_id: int,
                         entries: Iterable[Mapping[str, Any]]) -> int:
    """Add log entries to a job, skipping ``seq`` values already stored; returns how many
    were new. Each entry needs ``seq``, ``at`` (aware datetime), ``method``, ``url``,
    ``outcome``; the other fields are optional. Unknown keys → :class:`InvalidInput`."""
    batch: dict[int, Mapping[str, Any]] = {}
    for entry in entries:
        unknown = set(entry) - _LOG_FIELDS
        if unknown:
            raise InvalidInput(f"unknown log field {sorted(unknown)[0]!r}",
                               field=sorted(unknown)[0], code="unknown_field")
        seq = entry.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise InvalidInput(f"seq must be a non-negative integer, got {seq!r}", field="seq")
        batch.setdefault(seq, entry)
    if not batch:
        return 0
    if await session.get(Job, job_id) is None:
        raise NotFound.of("job", job_id)
    have = set((await session.scalars(select(JobLogEntry.seq).where(
        JobLogEntry.job_id == job_id, JobLogEntry.seq.in_(list(batch))))).all())
    added = 0
    for seq in sorted(set(batch) - have):
        entry = batch[seq]
        session.add(JobLogEntry(
            job_id=job_id, seq=seq, at=entry["at"], user_email=entry.get("user_email"),
            method=str(entry["method"])[:16], url=str(entry["url"]),
            status=entry.get("status"), bytes_in=int(entry.get("bytes_in") or 0),
            bytes_out=int(entry.get("bytes_out") or 0),
            duration_ms=int(entry.get("duration_ms") or 0), outcome=str(entry["outcome"])[:32],
            detail=entry.get("detail"), client=entry.get("client")))
        added += 1
    await session.flush()
    return added
