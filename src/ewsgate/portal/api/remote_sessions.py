"""REST API of Remote Technician sessions.

=======  =====================================  =============================================
POST     /api/v1/devices/{id}/remote-sessions   start *Open device web page* (User role) → 201
                                                ``{session_id, job_id, url, status,
                                                expires_at, …}``
GET      /api/v1/remote-sessions                live sessions: all in scope for an
                                                Administrator, else the caller's own
GET      /api/v1/remote-sessions/{id}           status: verifying, connecting, ready, ended,
                                                failed (+ reason)
DELETE   /api/v1/remote-sessions/{id}           end it (owner or Administrator)
=======  =====================================  =============================================

The job's Remote Technician Log (JSON, CSV, HAR) is ``GET /api/v1/jobs/{id}/log``
(:mod:`ewsgate.portal.api.jobs`, using :mod:`ewsgate.portal.sessions.log_export`).

Authentication and errors are the REST API's (:mod:`ewsgate.portal.api.deps`,
:mod:`ewsgate.portal.api.errors`): bearer token or session cookie + ``X-CSRF-Token``;
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from ewsgate.portal.api.deps import CurrentActor, Id
from ewsgate.portal.sessions.runtime import remote_technician_of

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["remote technician"])

SessionId = Annotated[str, Path(min_length=1, max_length=64)]


def _ok(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.post("/devices/{device_id}/remote-sessions", status_code=201)
async def start_session(device_id: Id, actor: CurrentActor, request: Request) -> JSONResponse:
    """Start *Open device web page* on a device: Remote Technician User, enabled device.

    Returns at once with status ``verifying``; poll ``GET /api/v1/remote-sessions/{id}``.
    The optional body ``{reason, ticket, read_only}`` is the customer policy's purpose; a
    device whose policy requires approval answers 409 ``approval_required`` (use
    ``POST /api/v1/devices/{id}/session-requests``).
    """
    from ewsgate.portal.api.policies import body_of
    from ewsgate.portal.sessions.gate import clean_purpose

    rt = remote_technician_of(request.app)
    data = await body_of(request)
    purpose = clean_purpose(data.get("reason"), data.get("ticket"), data.get("read_only"))
    view = await rt.sessions.create(actor, device_id, purpose)
    return _ok(view.as_json(rt.clock()), 201)


@router.get("/remote-sessions")
async def list_sessions(actor: CurrentActor, request: Request) -> JSONResponse:
    """Live sessions (all in scope for an Administrator; otherwise the caller's own)."""
    rt = remote_technician_of(request.app)
    now = rt.clock()
    return _ok({"sessions": [v.as_json(now) for v in await rt.sessions.list_live(actor)]})


@router.get("/remote-sessions/{session_id}")
async def get_session(session_id: SessionId, actor: CurrentActor,
                      request: Request) -> JSONResponse:
    """A session's status (``reason`` says why it failed or ended)."""
    rt = remote_technician_of(request.app)
    return _ok((await rt.sessions.get(actor, session_id)).as_json(rt.clock()))


@router.delete("/remote-sessions/{session_id}")
async def end_session(session_id: SessionId, actor: CurrentActor,
                      request: Request) -> JSONResponse:
    """End a session (its owner or an Administrator); the agent is told to close it."""
    rt = remote_technician_of(request.app)
    return _ok((await rt.sessions.end(actor, session_id)).as_json(rt.clock()))
