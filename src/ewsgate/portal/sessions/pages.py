"""The web pages of Remote Technician sessions (the UI glue around :mod:`.service`).

- ``POST /devices/{id}/open`` — the device page's *Open device web page* button: starts the
  session and goes (303) to its progress page.
- ``GET /remote-sessions/{id}`` — progress (``verifying`` → ``connecting`` → ``ready``), a live
  countdown, *End*, and the link to the device's page; ``static/js/remote-sessions.js`` polls
  the REST status and opens the session in a new tab when it is ready. Without JavaScript the
  page still works: reload it, follow the link, submit *End*.
- ``POST /remote-sessions/{id}/end`` — *End* (owner) / *Terminate* (Administrator).
- ``GET /remote-sessions`` — live sessions: an Administrator sees every one in scope and can
  terminate any; others see their own.

Pages use the UI's request plumbing (:func:`ewsgate.portal.ui.web.page`: login redirect, CSRF
and same-site checks on every POST) and the service layer for every decision.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ewsgate.portal.services.access import Action
from ewsgate.portal.services.errors import ServiceError
from ewsgate.portal.sessions.service import RemoteSessions, SessionView
from ewsgate.portal.ui import devices as ui_devices
from ewsgate.portal.ui.web import Page, is_safe_next, page

__all__ = ["end_session", "live_sessions", "open_device", "routes", "session_page"]

_STEPS = (("verifying", "Checking the device is the one on record"),
          ("connecting", "Connecting the installation to the relay"),
          ("ready", "Ready: the device web page is open"))


async def open_device(request: Request) -> Response:
    """``POST /devices/{id}/open``: start a session, then show its progress.

    An application without Remote Technician mounted (the UI alone) keeps the UI's own answer
    that sessions are not available.
    """
    if getattr(request.app.state, "ewsgate_rt", None) is None:
        return await ui_devices.open_device(request)
    return await _start_session(request)


@page
async def _start_session(p: Page, device_id: int) -> Response:
    from ewsgate.portal.sessions.gate import clean_purpose

    try:
        purpose = clean_purpose(p.field("reason"), p.field("ticket"),
                                p.field("read_only") == "1")
        outcome = await p.request.app.state.ewsgate_rt.requests.ask(p.actor, device_id,
                                                                    purpose)
        if outcome.request is not None:
            return p.redirect(f"/session-requests/{outcome.request.id}")
        view = outcome.session
    except ServiceError as exc:
        return p.ui.message(
            p.request, title="The session was not started", message=exc.message,
            status_code=exc.status, actor=p.actor, csrf_token=p.session_info.csrf_token,
            back_href=f"/devices/{device_id}", back_label="Back to the device")
    return p.redirect(f"/remote-sessions/{view.session_id}")


def _sessions(p: Page) -> RemoteSessions:
    # app.state.ewsgate_rt is the RemoteTechnician (not imported here: the UI's route table
    # imports this module, and the runtime imports the UI's renderer)
    sessions: RemoteSessions = p.request.app.state.ewsgate_rt.sessions
    return sessions


def _owner(p: Page, view: SessionView) -> bool:
    return view.user_id == p.actor.user_id


@page
async def session_page(p: Page, session_id: str) -> Response:
    """``GET /remote-sessions/{id}``: progress, countdown, *End*, the link."""
    sessions = _sessions(p)
    try:
        view = await sessions.get(p.actor, session_id)
    except ServiceError as exc:
        return p.failure(exc)
    now = sessions.now()
    return p.render("sessions/progress.html", "sessions", {
        "title": f"Remote session · {view.device_name or 'device'}",
        "view": view, "data": view.as_json(now), "steps": _STEPS,
        "owner": _owner(p, view),
        "can_end": view.status in ("verifying", "connecting", "ready"),
        "step_index": {s: i for i, (s, _) in enumerate(_STEPS)},
    })


@page
async def end_session(p: Page, session_id: str) -> Response:
    """``POST /remote-sessions/{id}/end``: end it (owner) or terminate it (Administrator)."""
    target = p.field("next")
    if not is_safe_next(target):
        target = f"/remote-sessions/{session_id}"
    try:
        await _sessions(p).end(p.actor, session_id)
    except ServiceError as exc:
        return p.failure(exc)
    return p.redirect(target)


@page
async def live_sessions(p: Page) -> Response:
    """``GET /remote-sessions``: live sessions (an Administrator's whole scope)."""
    sessions = _sessions(p)
    views = await sessions.list_live(p.actor)
    now = sessions.now()
    return p.render("sessions/live.html", "sessions", {
        "title": "Live Remote Technician sessions",
        "sessions": [(v, v.as_json(now)) for v in views],
        "is_admin": p.actor.can_anywhere(Action.MANAGE_ACCESS),
    })


def routes() -> list[Route]:
    """The page routes (kept out of the OpenAPI document)."""
    # ``POST /devices/{id}/open`` is listed with the device pages (ewsgate.portal.ui.routes).
    from ewsgate.portal.sessions import approval_pages

    return [*approval_pages.routes(),
        Route("/remote-sessions", live_sessions, methods=["GET"], include_in_schema=False),
        Route("/remote-sessions/{session_id:str}", session_page, methods=["GET"],
              include_in_schema=False),
        Route("/remote-sessions/{session_id:str}/end", end_session, methods=["POST"],
              include_in_schema=False),
    ]
