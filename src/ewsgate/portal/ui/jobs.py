"""The Jobs tab: the list (filters by type, status and device) and a job's page.

A job's page shows its summary and, at the bottom, the *Remote Technician Log*: every request
of the session in order (``get_job_log``), and above it what the agent reported about the
relay (refused destinations, tunnel protocol violations, the relay cut), when it did. The
list's filters are plain GET parameters, so a filtered view can be bookmarked or shared.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from ewsgate.portal.services import devices as device_service
from ewsgate.portal.services import jobs as job_service
from ewsgate.portal.services.errors import InvalidInput, ServiceError
from ewsgate.portal.store.models import JOB_STATUSES, TunnelReport
from ewsgate.portal.ui.lookups import Option
from ewsgate.portal.ui.rendering import JOB_TYPES
from ewsgate.portal.ui.web import Page, PageError, page

__all__ = ["job_detail", "job_list"]

_LIST_LIMIT = 200


def _filters(p: Page) -> dict[str, object]:
    params = p.request.query_params
    job_type = params.get("type", "").strip()
    status = params.get("status", "").strip()
    device = params.get("device", "").strip()
    if job_type and job_type not in JOB_TYPES:
        raise InvalidInput(f"type {job_type[:40]!r} is not one of {', '.join(JOB_TYPES)}",
                           field="type")
    if status and status not in JOB_STATUSES:
        raise InvalidInput(f"status {status[:20]!r} is not one of {', '.join(JOB_STATUSES)}",
                           field="status")
    if device and (not device.isdigit() or len(device) > 10):
        raise InvalidInput(f"device must be a device id (a number), not {device[:20]!r}",
                           field="device")
    return {"type": job_type, "status": status, "device": int(device) if device else None}


@page
async def job_list(p: Page) -> Response:
    """``GET /jobs``: newest first, at most 200."""
    error = None
    try:
        filters = _filters(p)
    except InvalidInput as exc:
        filters, error = {"type": "", "status": "", "device": None}, PageError.of(exc)
    async with p.transaction() as session:
        jobs = await job_service.list_jobs(session, p.actor, job_service.JobFilter(
            type=str(filters["type"]) or None, status=str(filters["status"]) or None,
            device_id=filters["device"] if isinstance(filters["device"], int) else None),
            limit=_LIST_LIMIT)
        devices = await device_service.list_devices(session, p.actor, limit=5000)
    return p.render("jobs/list.html", "jobs", {
        "title": "Jobs", "jobs": jobs, "filters": filters,
        "filtered": any(filters.values()), "type_options": list(JOB_TYPES),
        "status_options": JOB_STATUSES,
        "device_options": [Option(d.id, d.name) for d in devices],
        "limit": _LIST_LIMIT, "error": error,
    }, status_code=422 if error else 200)


@page
async def job_detail(p: Page, job_id: int) -> Response:
    """``GET /jobs/{id}``: the summary and the Remote Technician Log."""
    try:
        async with p.transaction() as session:
            job = await job_service.get_job(session, p.actor, job_id)
            log = await job_service.get_job_log(session, p.actor, job_id)
            reports = list(await session.scalars(  # after get_job's access check
                select(TunnelReport).where(TunnelReport.job_id == job_id)
                .order_by(TunnelReport.id).limit(200)))
    except ServiceError as exc:
        return p.failure(exc)
    return p.render("jobs/detail.html", "jobs", {
        "title": f"Job #{job.id}", "job": job, "log": log, "tunnel_reports": reports,
    })
