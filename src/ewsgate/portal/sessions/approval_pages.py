"""The pages of session requests: the approvers' queue and one request's page.

- ``GET /session-requests`` — pending requests the caller may answer, and the caller's own
  recent requests;
- ``GET /session-requests/{id}`` — one request: device, requester, reason, ticket, read-only;
  who answered and why; the session once approved; *Approve* / *Deny* (with a reason) for an
  approver;
- ``POST /session-requests/{id}/approve`` and ``/deny``.

Every decision is the service's (:mod:`.requests`); the pages only show and forward.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from ewsgate.portal.services.access import Action
from ewsgate.portal.services.errors import ServiceError
from ewsgate.portal.sessions.requests import SessionRequests
from ewsgate.portal.ui.web import Page, page

__all__ = ["approve", "deny", "request_list", "request_page", "routes"]


def _requests(p: Page) -> SessionRequests:
    requests: SessionRequests = p.request.app.state.ewsgate_rt.requests
    return requests


@page
async def request_list(p: Page) -> Response:
    """``GET /session-requests``: the approver's queue and the caller's own requests."""
    service = _requests(p)
    pending = await service.list(p.actor)
    mine = [r for r in await service.list(p.actor, status=None)
            if r.user_email == p.actor.email][:20]
    return p.render("sessions/requests.html", "requests", {
        "title": "Session requests",
        "pending": [r for r in pending if r.user_email != p.actor.email],
        "mine": mine,
        "can_answer": p.actor.can_anywhere(Action.APPROVE_SESSION),
    })


@page
async def request_page(p: Page, request_id: int) -> Response:
    """``GET /session-requests/{id}``: one request and its answer."""
    try:
        view = await _requests(p).get(p.actor, request_id)
    except ServiceError as exc:
        return p.failure(exc)
    return p.render("sessions/request.html", "requests", {
        "title": f"Session request #{view.id}", "r": view,
        "can_answer": view.status == "pending" and view.user_email != p.actor.email
        and p.actor.can_anywhere(Action.APPROVE_SESSION),
    })


@page
async def approve(p: Page, request_id: int) -> Response:
    """``POST /session-requests/{id}/approve``."""
    try:
        await _requests(p).approve(p.actor, request_id, p.field("reason") or None)
    except ServiceError as exc:
        return p.failure(exc)
    return p.redirect(f"/session-requests/{request_id}", done="Approved: the session opens.")


@page
async def deny(p: Page, request_id: int) -> Response:
    """``POST /session-requests/{id}/deny`` (a reason is required)."""
    try:
        await _requests(p).deny(p.actor, request_id, p.field("reason"))
    except ServiceError as exc:
        return p.failure(exc)
    return p.redirect(f"/session-requests/{request_id}", done="Denied.")


def routes() -> list[Route]:
    """The page routes (kept out of the OpenAPI document)."""
    return [
        Route("/session-requests", request_list, methods=["GET"], include_in_schema=False),
        Route("/session-requests/{request_id:int}", request_page, methods=["GET"],
              include_in_schema=False),
        Route("/session-requests/{request_id:int}/approve", approve, methods=["POST"],
              include_in_schema=False),
        Route("/session-requests/{request_id:int}/deny", deny, methods=["POST"],
              include_in_schema=False),
    ]
