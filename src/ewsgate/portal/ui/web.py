"""The request plumbing every UI page shares: who is signed in, CSRF, errors, rendering.

Theory of operation. :func:`mount_ui` adds the UI's routes and ``/static`` to the portal's
application and keeps one :class:`PortalUI` (its dependencies: the database, the auth settings,
the login limiter shared with the API, the clock) in ``app.state``. Each page handler is
wrapped by :func:`page`, which, before the handler runs:

1. authenticates the web-session cookie through :func:`ewsgate.portal.auth.session_from_cookie`
   in its own short transaction (so ``last_seen_at`` is kept even when the page fails) —
   no valid cookie → ``303`` to ``/login?next=…``;
2. on ``POST``: refuses cross-site requests (``Origin`` or ``Sec-Fetch-Site`` naming another
   site) and forms without the session's CSRF token, with a 403 page that says what to do.

Handlers then call the service layer (:mod:`ewsgate.portal.services`) inside
``async with p.transaction()`` — one transaction per change, committed only if the service
raised nothing, so a refused change leaves nothing written — and render a template with
:meth:`Page.render`. A :class:`~ewsgate.portal.services.errors.ServiceError` from a change is
shown in the page (status from the error, the field named, the form re-filled); one raised
while *reading* a page (``NotFound`` …) becomes a message page with that status. The UI never
decides access itself: what a page offers follows from what the service layer allows.

Successful changes redirect (``303``, Post/Redirect/Get) with ``?done=KEY``; the key selects a
fixed sentence from :data:`NOTICES`, so no text from the URL is ever reflected into a page.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ewsgate.portal.auth import (
    AuthSettings,
    LoginLimiter,
    SessionInfo,
    check_csrf,
    session_from_cookie,
)
from ewsgate.portal.services.access import Action, Actor
from ewsgate.portal.services.errors import AuthenticationFailed, ServiceError
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.types import Clock, utc_now
from ewsgate.portal.ui.rendering import Renderer

__all__ = [
    "NOTICES",
    "ROLE_LABELS",
    "Page",
    "PageError",
    "PortalUI",
    "UIConfig",
    "Viewer",
    "is_safe_next",
    "page",
    "same_site",
]

#: Fixed sentences a redirect may ask for with ``?done=KEY``.
NOTICES: dict[str, str] = {
    "signed-out": "You are signed out.",
    "rt-on": "Remote Technician is now enabled on this device.",
    "rt-off": "Remote Technician is now off on this device; its live sessions were ended.",
    "user-created": "The user was created.",
    "user-saved": "The account was saved.",
    "user-deleted": "The user was deleted.",
    "profile-saved": "Your account was saved.",
    "role-added": "The role was given.",
    "role-removed": "The role was removed.",
    "token-revoked": "The token was revoked; it no longer works.",
    "customer-created": "The customer was created.",
    "customer-saved": "The customer was saved.",
    "policy-saved": "The policy was saved; customers below it inherit it.",
    "customer-deleted": "The customer was deleted.",
    "site-subnets-saved": "The site subnets were saved; they apply from the next identity "
                          "check and session.",
    "device-deleted": "The device was deleted. Its jobs and their logs are kept.",
    "device-created": "The device was added. Remote Technician is off until a Configurer "
                      "turns it on.",
}

ROLE_LABELS: dict[str, str] = {
    "administrator": "Administrator",
    "configurer": "Remote Technician Configurer",
    "user": "Remote Technician User",
    "viewer": "Viewer",
    "approver": "Customer Approver",
}

FIELD_LABELS: dict[str, str] = {
    "email": "E-mail", "password": "Password", "name": "Name", "role": "Role",
    "customer_id": "Customer", "parent_id": "Part of", "user_id": "User", "ip": "IP address",
    "enabled": "Remote Technician", "csrf_token": "Form", "q": "Search", "customer": "Customer",
    "installation": "Installation", "make": "Make", "rt": "Remote Technician", "type": "Type",
    "status": "Status", "device": "Device", "installation_id": "Installation",
    "site_subnets": "Site subnets",
    "hostname": "Host name", "mac": "MAC address", "serial": "Serial number",
    "ews_endpoints": "Web server", "identity_method": "Identity by", "snmp_version": "SNMP",
    "snmp_port": "SNMP port", "snmp_community": "SNMP community", "snmp_v3_user": "SNMPv3 user",
    "model": "Model", "scope": "Scope", "current_password": "Current password",
    "active": "Status", "token_name": "Token name",
}


@dataclass(frozen=True)
class UIConfig:
    """What the UI needs from the portal; built once by the portal's ``create_app``."""

    database: Database
    auth: AuthSettings
    limiter: LoginLimiter
    clock: Clock = utc_now
    #: ``HOST:PORT`` agents give to ``ewsgate agent enroll --portal`` (the enrolment port)
    enrol_address: str | None = None
    #: turns a freshly issued token into what the administrator copies: ``<secret>.<ca-pin>``
    display_token: Callable[[str], str] = lambda token: token

    @classmethod
    def from_context(cls, ctx: Any) -> UIConfig:
        """From the portal's :class:`~ewsgate.portal.context.PortalContext`. Agents enrol at
        the enrolment port (``--enrol-listen``, default the gRPC port + 1) on the host browsers
        use (``--public-url``) when it is bound to every interface, else at its own address."""
        from ewsgate.portal.control.runtime import (
            display_enrolment_token,
            public_enrolment_address,
        )

        return cls(database=ctx.database, auth=ctx.config.auth, limiter=ctx.login_limiter,
                   clock=ctx.clock, enrol_address=public_enrolment_address(ctx),
                   display_token=lambda token: display_enrolment_token(ctx, token))


@dataclass(frozen=True)
class Viewer:
    """The signed-in person as the layout shows them."""

    email: str
    display_name: str
    roles_label: str

    @classmethod
    def of(cls, actor: Actor) -> Viewer:
        order = {role: index for index, role in enumerate(ROLE_LABELS)}
        roles = sorted({a.role for a in actor.assignments}, key=lambda r: order.get(r, 99))
        label = ", ".join(ROLE_LABELS.get(r, r) for r in roles) or "no role yet"
        return cls(actor.email, actor.name or actor.email, label)


@dataclass(frozen=True)
class PageError:
    """A service error as a page shows it; ``inline`` when the form shows it by its field."""

    message: str
    code: str | None = None
    field: str | None = None
    inline: bool = False

    @property
    def field_label(self) -> str:
        return FIELD_LABELS.get(self.field or "", (self.field or "").replace("_", " "))

    @classmethod
    def of(cls, exc: ServiceError, form_fields: frozenset[str] = frozenset()) -> PageError:
        message = exc.message
        if exc.field and message.startswith(exc.field + " ") and exc.field in FIELD_LABELS:
            message = FIELD_LABELS[exc.field] + message[len(exc.field):]  # "ip '1.2.3'" → label
        message = message[:1].upper() + message[1:]
        # "ews_endpoints[1].port" is shown on the form's "ews_endpoints" field
        field_name = re.split(r"[\[.]", exc.field)[0] if exc.field else None
        return cls(message, exc.code, field_name, field_name in form_fields)


class PortalUI:
    """The UI's dependencies plus the renderer; one per application."""

    def __init__(self, config: UIConfig) -> None:
        self.config = config
        self.renderer = Renderer(config.clock)

    @property
    def database(self) -> Database:
        return self.config.database

    def nav_items(self, actor: Actor | None) -> list[tuple[str, str, str]]:
        items = [("devices", "Devices", "/devices"),
                 ("installations", "Installations", "/installations"),
                 ("customers", "Customers", "/customers")]
        if actor is not None and actor.can_anywhere(Action.MANAGE_ACCESS):
            items.append(("users", "Users & roles", "/users"))
            items.append(("notifications", "Notifications", "/notifications"))
        items.append(("jobs", "Jobs", "/jobs"))
        if actor is not None and (actor.can_anywhere(Action.OPEN_SESSION)
                                  or actor.can_anywhere(Action.MANAGE_ACCESS)):
            items.append(("sessions", "Live sessions", "/remote-sessions"))
        if actor is not None and (actor.can_anywhere(Action.APPROVE_SESSION)
                                  or actor.can_anywhere(Action.OPEN_SESSION)):
            items.append(("requests", "Session requests", "/session-requests"))
        if actor is not None and actor.can_anywhere(Action.VIEW_AUDIT):
            items.append(("audit", "Audit", "/audit"))
        return items

    def cookie_name(self) -> str:
        return self.config.auth.cookie_name

    def set_session_cookie(self, response: Response, value: str, max_age: int) -> None:
        response.set_cookie(self.cookie_name(), value, max_age=max_age, path="/",
                            secure=self.config.auth.cookie_secure, httponly=True,
                            samesite="lax")

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie(self.cookie_name(), path="/",
                               secure=self.config.auth.cookie_secure, httponly=True,
                               samesite="lax")

    def message(self, request: Request, *, title: str, message: str, status_code: int,
                actor: Actor | None = None, csrf_token: str = "",
                back_href: str | None = "/devices", back_label: str | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        """A page that just says something (errors, refusals, not-yet-available features)."""
        if actor is None:
            return self.renderer.page("message_public.html", {
                "title": title, "message": message, "back_href": back_href or "/login",
                "back_label": back_label or "Sign in"}, status_code=status_code,
                headers=headers)
        return self.renderer.page("message.html", {
            "title": title, "message": message, "back_href": back_href,
            "back_label": back_label or ("Back to devices" if back_href == "/devices" else "Back"),
            "nav_items": self.nav_items(actor), "nav": "",
            "me": Viewer.of(actor), "csrf_token": csrf_token, "notice": None, "error": None,
        }, status_code=status_code, headers=headers)


@dataclass
class Page:
    """One authenticated request being served: the actor, the session, the form (on POST)."""

    request: Request
    ui: PortalUI
    actor: Actor
    session_info: SessionInfo
    form: FormData | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work with the service layer: committed only if nothing raised."""
        async with self.ui.database.transaction() as session:
            yield session

    def field(self, name: str) -> str:
        """A submitted form field as stripped text ("" when absent)."""
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else ""

    def render(self, template: str, nav: str, context: Mapping[str, Any], *,
               status_code: int = 200) -> Response:
        done = self.request.query_params.get("done", "")
        full = {
            "title": context.get("title", nav.capitalize()),
            "nav_items": self.ui.nav_items(self.actor),
            "nav": nav,
            "me": Viewer.of(self.actor),
            "csrf_token": self.session_info.csrf_token,
            "notice": NOTICES.get(done),
            "error": None,
            **context,
        }
        return self.ui.renderer.page(template, full, status_code=status_code,
                                     headers=self.extra_headers)

    def failure(self, exc: ServiceError) -> Response:
        """A message page for an error met while reading what a page shows."""
        titles = {404: "Not found", 403: "Not allowed", 409: "Not possible right now"}
        return self.ui.message(self.request, title=titles.get(exc.status, "Something is wrong"),
                               message=PageError.of(exc).message, status_code=exc.status,
                               actor=self.actor, csrf_token=self.session_info.csrf_token)

    def redirect(self, path: str, done: str | None = None) -> RedirectResponse:
        if done is not None:
            path += ("&" if "?" in path else "?") + "done=" + quote(done)
        return RedirectResponse(path, status_code=303)


Handler = Callable[..., Awaitable[Response]]


def same_site(request: Request) -> bool:
    """False when the browser says the request comes from another site (CSRF defence in
    depth besides the token): ``Sec-Fetch-Site: cross-site`` or an ``Origin`` that is not ours.
    """
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    expected = f"{request.url.scheme}://{request.url.netloc}"
    return hmac.compare_digest(origin.lower(), expected.lower())


def is_safe_next(path: str | None) -> bool:
    """Whether ``path`` is a same-origin path to go to after login (no open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return False
    parts = urlsplit(path)
    return not parts.scheme and not parts.netloc and not any(ord(c) < 32 for c in path)


def ui_of(request: Request) -> PortalUI:
    ui: PortalUI = request.app.state.ewsgate_ui
    return ui


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a page handler ``handler(p: Page, **path_params)`` with authentication and CSRF."""

    async def endpoint(request: Request) -> Response:
        ui = ui_of(request)
        try:
            async with ui.database.transaction() as session:
                actor, info = await session_from_cookie(
                    session, request.cookies.get(ui.cookie_name()), settings=ui.config.auth,
                    clock=ui.config.clock)
        except AuthenticationFailed as exc:
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            query = "next=" + quote(target if request.method == "GET" else "/devices", safe="")
            if exc.code == "session_expired":
                query += "&expired=1"
            response = RedirectResponse(f"/login?{query}", status_code=303)
            if request.cookies.get(ui.cookie_name()):
                ui.clear_session_cookie(response)
            return response
        p = Page(request, ui, actor, info)
        if request.method == "POST":
            p.form = await request.form(max_files=0, max_fields=100)
            token = p.form.get("csrf_token")
            if not same_site(request) or not check_csrf(
                    info, token if isinstance(token, str) else None):
                return ui.message(
                    request, title="Request refused",
                    message="This form was not accepted: it did not come from this portal's "
                    "own page, or the page was too old. Go back, reload the page and try again.",
                    status_code=403, actor=actor, csrf_token=info.csrf_token)
        return await handler(p, **request.path_params)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def new_form_token() -> str:
    """A random token for the login form's double-submit cookie."""
    return secrets.token_urlsafe(24)
