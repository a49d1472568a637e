"""FastAPI dependencies shared by every REST router (also by routers other parts add).

* :func:`portal_context` — the :class:`~ewsgate.portal.context.PortalContext` of the app.
* :func:`current_actor` — authenticates the request, by ``Authorization: Bearer <token>``
  or by the portal's session cookie. With the cookie, a state-changing method (anything but
  GET/HEAD/OPTIONS) must carry the session's CSRF token in ``X-CSRF-Token`` and must not come
  from another origin; otherwise 403 ``csrf_failed``. Authentication runs in its own short
  transaction, so ``last_seen_at`` / ``last_used_at`` are kept even when the call then fails.

Typical use::

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: int, actor: CurrentActor, ctx: Context) -> ThingOut:
        async with ctx.database.transaction() as session:
            return ThingOut.of(await things.get_thing(session, actor, thing_id))
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Path, Query, Request

from ewsgate.portal.auth import (
    SessionInfo,
    actor_from_bearer,
    check_csrf,
    session_from_cookie,
)
from ewsgate.portal.context import PortalContext
from ewsgate.portal.services.access import Actor
from ewsgate.portal.services.errors import AuthenticationFailed, PermissionDenied

__all__ = ["CSRF_HEADER", "Context", "CurrentActor", "Id", "QueryId", "current_actor",
           "portal_context", "session_info"]

CSRF_HEADER = "X-CSRF-Token"
_MAX_ID = 2**31 - 1

#: a row id in a path: 1 .. 2^31-1 (larger numbers are refused with 422, not a 500)
Id = Annotated[int, Path(ge=1, le=_MAX_ID)]
#: an optional row id in a query string
QueryId = Annotated[int | None, Query(ge=1, le=_MAX_ID)]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def portal_context(request: Request) -> PortalContext:
    """The app's shared runtime objects."""
    ctx: PortalContext = request.app.state.portal
    return ctx


Context = Annotated[PortalContext, Depends(portal_context)]


async def current_actor(request: Request, ctx: Context) -> Actor:
    """The authenticated caller (see the module docstring); 401 if none."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("use 'Authorization: Bearer <token>' with a personal API "
                                       "token", code="invalid_token")
        async with ctx.database.transaction() as session:
            return await actor_from_bearer(session, token.strip(), clock=ctx.clock)
    cookie = request.cookies.get(ctx.config.auth.cookie_name)
    if not cookie:
        raise AuthenticationFailed("log in (POST /api/v1/auth/login) or send "
                                   "'Authorization: Bearer <token>'", code="not_authenticated")
    async with ctx.database.transaction() as session:
        actor, info = await session_from_cookie(session, cookie, settings=ctx.config.auth,
                                                clock=ctx.clock)
    request.state.web_session = info
    if request.method not in _SAFE_METHODS:
        _check_same_origin(request)
        if not check_csrf(info, request.headers.get(CSRF_HEADER)):
            raise PermissionDenied(f"missing or wrong {CSRF_HEADER} header; send the csrf_token "
                                   "from POST /api/v1/auth/login or GET /api/v1/auth/me",
                                   code="csrf_failed")
    return actor


def _check_same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if request.headers.get("sec-fetch-site") == "cross-site" or (
            origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc):
        raise PermissionDenied("cross-site requests with the session cookie are refused",
                               code="csrf_failed")


def session_info(request: Request) -> SessionInfo | None:
    """The web session of a cookie-authenticated request (after :func:`current_actor`)."""
    return getattr(request.state, "web_session", None)


CurrentActor = Annotated[Actor, Depends(current_actor)]
