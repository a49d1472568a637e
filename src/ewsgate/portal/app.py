"""The portal's HTTP application: ``create_app(config)`` composes every part into one ASGI app.

::

    create_app(config, database=?, clock=?, background=[...])
      ├─ app.state.portal = PortalContext(config, database, clock, limiter, background)
      ├─ JSON error handlers for /api/ paths              (api/errors.py)
      ├─ /api/v1/...   REST API + /api/v1/openapi.json     (api/)
      ├─ parts:        one line each in _mount_parts()     (web UI, Remote Technician, ...)
      └─ SecurityHeadersMiddleware around everything       (security_headers.py)

The lifespan starts ``ctx.background`` services in order (the gRPC control server, sweepers...)
and stops them in reverse order on shutdown; then it disposes the database if it made it.
Parts that need a background service append it to ``ctx.background`` while being mounted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ewsgate import __version__
from ewsgate.portal.api import router as api_router
from ewsgate.portal.api.errors import install_error_handlers
from ewsgate.portal.context import BackgroundService, PortalConfig, PortalContext
from ewsgate.portal.request_origin import RequestOriginMiddleware
from ewsgate.portal.security_headers import SecurityHeadersMiddleware
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.types import Clock, utc_now

__all__ = ["context_of", "create_app"]

log = logging.getLogger(__name__)

_DESCRIPTION = """\
REST API of the ewsgate portal: inventory (customers, installations, devices), users and role
assignments, the Remote Technician switch, jobs and their Remote Technician Log.

Authenticate with `Authorization: Bearer <token>` (a personal API token from
`ewsgate admin create-token` or the portal's *API tokens* page) or with the session cookie set by
`POST /api/v1/auth/login`; cookie-authenticated changes must send `X-CSRF-Token`.
Errors are `{"error": {"code": "...", "message": "...", "field": "..."}}`; an object outside
your scope answers 404 exactly like a missing one.
"""


def create_app(config: PortalConfig, *, database: Database | None = None,
               clock: Clock = utc_now, background: Sequence[BackgroundService] = (),
               ui: bool = True) -> FastAPI:
    """The portal application for ``config``.

    ``database`` defaults to one opened on ``config.database_url`` (and closed on shutdown);
    tests pass their own, and a fake ``clock``. ``ui=False`` leaves out the web pages.
    """
    owns = database is None
    if database is None:
        from ewsgate.portal.store.keyring import load_or_create_keyring

        database = Database(config.database_url,
                            keyring=load_or_create_keyring(config.data_dir))
    ctx = PortalContext(config=config, database=database,
                        clock=clock, background=list(background), owns_database=owns)
    app = FastAPI(title="ewsgate portal API", version=__version__, description=_DESCRIPTION,
                  openapi_url="/api/v1/openapi.json", docs_url=None, redoc_url=None,
                  lifespan=_lifespan)
    app.state.portal = ctx
    install_error_handlers(app)
    app.include_router(api_router)
    _mount_parts(app, ctx, ui=ui)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestOriginMiddleware)  # who/where for the audit trail
    return app


def _mount_parts(app: FastAPI, ctx: PortalContext, *, ui: bool) -> None:
    """The other parts of the portal, one line each (imports are local: a part that is not
    wanted is never imported)."""
    if ui:
        from ewsgate.portal.ui import UIConfig, mount_ui

        mount_ui(app, UIConfig.from_context(ctx))
    from ewsgate.portal.sessions.runtime import mount_from_context

    mount_from_context(app, ctx, pages=ui)


def context_of(app: FastAPI) -> PortalContext:
    """The :class:`PortalContext` of an app made by :func:`create_app`."""
    ctx: PortalContext = app.state.portal
    return ctx


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    ctx = context_of(app)
    started: list[BackgroundService] = []
    try:
        for service in ctx.background:
            log.info("starting %s", service.name)
            await service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)
        if ctx.owns_database:
            await ctx.database.dispose()
