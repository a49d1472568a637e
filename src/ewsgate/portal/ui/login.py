"""Sign in and sign out.

``GET /login`` shows the form; ``POST /login`` checks the e-mail and password through
:func:`ewsgate.portal.auth.login` (argon2, the shared failure limiter) and sets the web-session
cookie. There is no session yet to hold a CSRF secret, so the login form is protected by a
double-submit token: ``GET`` sets a random value in a short-lived, HttpOnly, SameSite=Strict
cookie and in the form; ``POST`` accepts only when both agree (and the request is same-site).
That stops *login CSRF* — another site signing the browser into an attacker's account.

``POST /logout`` (CSRF-checked like every form) deletes the session row and the cookie.
After login the browser goes to ``next`` only when it is a same-origin path.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ewsgate.portal.auth import login as auth_login
from ewsgate.portal.auth import logout as auth_logout
from ewsgate.portal.auth import session_from_cookie
from ewsgate.portal.services import audit
from ewsgate.portal.services.errors import AuthenticationFailed, RateLimited
from ewsgate.portal.ui.web import (
    NOTICES,
    Page,
    PageError,
    PortalUI,
    is_safe_next,
    new_form_token,
    page,
    same_site,
    ui_of,
)

__all__ = ["LOGIN_FORM_COOKIE", "login_form", "login_submit", "logout"]

LOGIN_FORM_COOKIE = "ewsgate_login_form"
_LOGIN_FORM_MAX_AGE = 3600


def _form_cookie_name(ui: PortalUI) -> str:
    return ("__Host-" if ui.config.auth.cookie_secure else "") + LOGIN_FORM_COOKIE


def _login_page(request: Request, ui: PortalUI, *, email: str = "", next_path: str = "/devices",
                error: PageError | None = None, notice: str | None = None,
                status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    token = new_form_token()
    response = ui.renderer.page("login.html", {
        "title": "Sign in", "csrf_token": token, "email": email,
        "next_path": next_path if is_safe_next(next_path) else "/devices",
        "error": error, "notice": notice,
    }, status_code=status_code, headers=headers)
    response.set_cookie(_form_cookie_name(ui), token, max_age=_LOGIN_FORM_MAX_AGE, path="/",
                        secure=ui.config.auth.cookie_secure, httponly=True, samesite="strict")
    return response


async def login_form(request: Request) -> Response:
    """``GET /login``: the sign-in form; someone already signed in goes straight on."""
    ui = ui_of(request)
    next_path = request.query_params.get("next", "/devices")
    cookie = request.cookies.get(ui.cookie_name())
    if cookie:
        try:
            async with ui.database.transaction() as session:
                await session_from_cookie(session, cookie, settings=ui.config.auth,
                                          clock=ui.config.clock)
        except AuthenticationFailed:
            pass  # expired or unknown: show the form
        else:
            return RedirectResponse(next_path if is_safe_next(next_path) else "/devices",
                                    status_code=303)
    notice = NOTICES.get(request.query_params.get("done", ""))
    error = None
    if request.query_params.get("expired"):
        error = PageError("Your session has expired; sign in again.", "session_expired")
    return _login_page(request, ui, next_path=next_path, notice=notice, error=error)


async def login_submit(request: Request) -> Response:
    """``POST /login``: check the credentials; on success set the cookie and go on."""
    ui = ui_of(request)
    form = await request.form(max_files=0, max_fields=10)
    email = str(form.get("email") or "").strip()
    password = str(form.get("password") or "")
    next_path = str(form.get("next") or "/devices")
    presented = str(form.get("csrf_token") or "")
    expected = request.cookies.get(_form_cookie_name(ui), "")
    if not same_site(request) or not expected or not hmac.compare_digest(
            presented.encode(), expected.encode()):
        return _login_page(request, ui, email=email, next_path=next_path, status_code=403,
                           error=PageError("This sign-in form was too old or did not come from "
                                           "this portal; it has been reloaded — sign in again.",
                                           "csrf_failed"))
    if not email:
        return _login_page(request, ui, next_path=next_path, status_code=422, error=PageError(
            "Enter your e-mail address.", "invalid_input", "email", inline=True))
    if not password:
        return _login_page(request, ui, email=email, next_path=next_path, status_code=422,
                           error=PageError("Enter your password.", "invalid_input", "password",
                                           inline=True))
    client_ip = request.client.host if request.client else None
    try:
        async with ui.database.transaction() as session:
            result = await auth_login(
                session, email, password, settings=ui.config.auth, limiter=ui.config.limiter,
                clock=ui.config.clock, client_ip=client_ip,
                user_agent=request.headers.get("user-agent"))
    except RateLimited as exc:
        return _login_page(request, ui, email=email, next_path=next_path, status_code=429,
                           headers={"Retry-After": str(exc.retry_after)},
                           error=PageError(
                               f"Too many failed sign-ins for this account or address. "
                               f"Wait {_duration(exc.retry_after)} and try again, or ask an "
                               "administrator to check the account.", exc.code))
    except AuthenticationFailed as exc:
        await audit.record_failed_sign_in(ui.database, email, exc.code, clock=ui.config.clock)
        return _login_page(request, ui, email=email, next_path=next_path, status_code=401,
                           error=PageError("Wrong e-mail or password. Check both and try again.",
                                           exc.code))
    target = next_path if is_safe_next(next_path) else "/devices"
    response = RedirectResponse(target, status_code=303)
    lifetime = int(ui.config.auth.session_lifetime.total_seconds())
    ui.set_session_cookie(response, result.cookie_value, lifetime)
    response.delete_cookie(_form_cookie_name(ui), path="/", secure=ui.config.auth.cookie_secure,
                           httponly=True, samesite="strict")
    return response


@page
async def logout(p: Page) -> Response:
    """``POST /logout``: end the web session, forget the cookie."""
    async with p.transaction() as session:
        await auth_logout(session, p.request.cookies.get(p.ui.cookie_name()),
                          clock=p.ui.config.clock)
    response = RedirectResponse("/login?done=signed-out", status_code=303)
    p.ui.clear_session_cookie(response)
    return response


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{(seconds + 59) // 60} minutes"
