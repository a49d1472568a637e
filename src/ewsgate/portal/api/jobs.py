"""REST: jobs and the Remote Technician Log of each job (JSON, or CSV / HAR downloads made by
:mod:`ewsgate.portal.sessions.log_export`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from ewsgate import __version__
from ewsgate.portal.api.deps import Context, CurrentActor, Id, QueryId
from ewsgate.portal.api.schemas import JobLogEntryOut, JobLogOut, JobOut, TunnelReportOut
from ewsgate.portal.services import jobs
from ewsgate.portal.sessions.log_export import purpose_line, to_csv, to_har
from ewsgate.portal.store.models import RemoteSession, TunnelReport

__all__ = ["router"]

router = APIRouter()


@router.get("/jobs", tags=["jobs"])
async def list_jobs(actor: CurrentActor, ctx: Context, type: str | None = None,
                    status: Literal["queued", "running", "completed", "failed"] | None = None,
                    device_id: QueryId = None, user_id: QueryId = None,
                    customer_id: QueryId = None, since: datetime | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Annotated[int, Query(ge=0)] = 0) -> list[JobOut]:
    """Jobs you can see, newest first."""
    filters = jobs.JobFilter(type=type, status=status, device_id=device_id, user_id=user_id,
                             customer_id=customer_id, since=since)
    async with ctx.database.transaction() as s:
        rows = await jobs.list_jobs(s, actor, filters, limit=limit, offset=offset)
        return [JobOut.model_validate(r) for r in rows]


@router.get("/jobs/{job_id}", tags=["jobs"])
async def get_job(job_id: Id, actor: CurrentActor, ctx: Context) -> JobOut:
    async with ctx.database.transaction() as s:
        return JobOut.model_validate(await jobs.get_job(s, actor, job_id))


@router.get("/jobs/{job_id}/tunnel-reports", tags=["jobs"])
async def get_job_tunnel_reports(job_id: Id, actor: CurrentActor, ctx: Context,
                                 ) -> list[TunnelReportOut]:
    """What the agent reported about the relay in this job's session, oldest first: refused
    destinations and streams, tunnel protocol violations, the relay being cut."""
    async with ctx.database.transaction() as s:
        await jobs.get_job(s, actor, job_id)  # the access check
        rows = await s.scalars(select(TunnelReport).where(TunnelReport.job_id == job_id)
                               .order_by(TunnelReport.id).limit(1000))
        return [TunnelReportOut.model_validate(r) for r in rows]


@router.get("/jobs/{job_id}/log", tags=["jobs"], response_model=None, responses={
    200: {"model": JobLogOut, "description": "JSON (default); CSV or HAR with ``format``"}})
async def get_job_log(job_id: Id, actor: CurrentActor, ctx: Context,
                      format: Literal["json", "csv", "har"] = "json",
                      after_seq: Annotated[int | None, Query(ge=-1)] = None,
                      limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
                      ) -> JobLogOut | Response:
    """The job's Remote Technician Log in ``seq`` order: JSON (``after_seq`` returns only newer
    entries, for live tailing), or a download as ``format=csv`` / ``format=har``."""
    async with ctx.database.transaction() as s:
        job = await jobs.get_job(s, actor, job_id)
        rows = await jobs.get_job_log(s, actor, job_id,
                                      after_seq=after_seq if format == "json" else None,
                                      limit=limit)
        remote = await s.scalar(select(RemoteSession.url).where(RemoteSession.job_id == job_id))
    result = job.result or {}
    purpose, approval = result.get("purpose"), result.get("approval")
    if format == "json":
        return JobLogOut(job_id=job.id, status=job.status, live=job.status == "running",
                         purpose=purpose, approval=approval,
                         entries=[JobLogEntryOut.model_validate(r) for r in rows])
    filename = f"job-{job_id}-remote-technician-log"
    headers = {"Cache-Control": "no-store"}
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return Response(to_csv(rows, purpose=purpose_line(purpose, approval)),
                        media_type="text/csv; charset=utf-8", headers=headers)
    title = f"Job {job_id}: {job.device_name or 'device'}"
    if line := purpose_line(purpose, approval):
        title += f" · {line}"
    har = to_har(rows, base_url=remote or "https://device.invalid/",
                 creator_version=__version__, page_title=title)
    headers["Content-Disposition"] = f'attachment; filename="{filename}.har"'
    return Response(json.dumps(har, indent=1), media_type="application/json", headers=headers)
