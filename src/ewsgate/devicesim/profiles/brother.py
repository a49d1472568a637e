"""``brother``: legacy TLS and a form login with a per-boot field name (Brother MFC-9340CDW-like).

Quirks reproduced (sources in docs/devicesim.md):

* HTTPS offers **only TLS 1.0/1.1** with CBC-SHA suites (see :mod:`ewsgate.devicesim.tls`);
  Chromium refuses it outright, so whoever sits in front must terminate it with a legacy client
  context. With an ``--https`` listener, plain HTTP answers ``301`` to ``https://<device-ip>/…``.
* The login is a form at ``/general/status.html`` whose password input has a **random name per
  boot** (``B`` + three hex digits, e.g. ``Baf9``), so nothing may hard-code it. The form also
  posts ``loginurl`` (where to go after login) and a hidden ``CSRFToken``.
* A successful login answers **301** (redirect-after-POST) to ``loginurl`` with
  ``Set-Cookie: AuthCookie=…``; every settings POST answers 301 too. A client that follows a
  301 automatically loses the POST's answer; browsers turn it into a GET.
* Admin pages need the ``AuthCookie``; their forms carry a ``CSRFToken`` bound to the session
  and a POST without the right token is refused (403, the page again with an error), the
  multipart firmware upload included.
* ``Server: debut/1.30`` (Brother's embedded server).
"""

from __future__ import annotations

import hmac
import secrets
import string

from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin
from ewsgate.devicesim.state import DeviceContext
from ewsgate.devicesim.web import Request, Response, esc, redirect

__all__ = ["BrotherProfile"]

PASSWORD = "initpass"
_ADMIN_PAGES = ("/general/contact.html", "/admin/firmware.html", "/general/log.html",
                "/admin/firmware_upload.html", "/general/log_download.html")


def _field_name() -> str:
    return "B" + "".join(secrets.choice(string.hexdigits[:16]) for _ in range(3))


class BrotherProfile(Profile):
    info = ProfileInfo(
        name="brother", make="Brother", model="MFC-9340CDW", serial="E71592K4N312345",
        mac="30:05:5c:12:34:56", snmp_vendor="brother", server="debut/1.30", tls="legacy",
        hostname_prefix="BRN", firmware="Ver.V (2020-04-15)",
        summary="Legacy TLS 1.0/1.1 only; login form with a per-boot random password field "
                "name, hidden CSRFToken, loginurl, AuthCookie, 301 redirect-after-POST")
    skin = Skin(logo="brother", product_line="Web Based Management", header_bg="#1d2088",
                accent="#1d2088", font="Verdana, Arial, sans-serif")

    def __init__(self, ctx: DeviceContext) -> None:
        #: the password input's name, new at every boot
        self.password_field = _field_name()
        #: AuthCookie → CSRF token of that session
        self.sessions: dict[str, str] = {}
        self.anonymous_csrf = secrets.token_urlsafe(24)
        super().__init__(ctx)

    def setup(self) -> None:
        r = self.router
        r.add("/", self.root)
        r.add("/general/status.html", self.status, ("GET", "POST"))
        r.add("/general/contact.html", self.settings, ("GET", "POST"))
        r.add("/admin/firmware.html", self.firmware)
        r.add("/admin/firmware_upload.html", self.upload, ("POST",))
        r.add("/general/log.html", self.logs)
        r.add("/general/log_download.html", self.download)
        r.add("/general/logout.html", self.logout, ("POST", "GET"))

    async def handle(self, request: Request) -> Response:
        if request.scheme == "http" and self.ctx.https_port is not None:
            return redirect(self.ctx.base_url("https") + request.target, 301,
                            [("Server", self.info.server)])
        if request.path in _ADMIN_PAGES and self.session(request) is None:
            response = self.page("Status", self.login_box(request.path, "") + self.status_html(),
                                 401 if request.method == "POST" else 200)
        else:
            response = await self.router.dispatch(request)  # type: ignore[assignment]
        response.headers.append(("Server", self.info.server))
        response.headers.append(("Cache-Control", "no-cache"))
        return response

    def session(self, request: Request) -> str | None:
        cookie = request.cookies.get("AuthCookie")
        return cookie if cookie in self.sessions else None

    def csrf(self, request: Request) -> str:
        session = self.session(request)
        return self.sessions[session] if session else self.anonymous_csrf

    def nav(self) -> list[tuple[str, str]]:
        return [("Status", "/general/status.html"), ("Contact & Location", "/general/contact.html"),
                ("Firmware Update", "/admin/firmware.html"), ("Log", "/general/log.html")]

    def login_box(self, loginurl: str, error: str, *, csrf: str | None = None) -> str:
        note = f'<div class="err" id="login-error">{esc(error)}</div>' if error else ""
        return (f'{note}<form method="post" action="/general/status.html" id="login-form">'
                '<table class="grid"><tr><th>Login</th><td>'
                f'<input type="password" id="LogBox" name="{self.password_field}" size="20">'
                f'<input type="hidden" name="CSRFToken" value="{esc(csrf or self.anonymous_csrf)}">'
                f'<input type="hidden" name="loginurl" value="{esc(loginurl)}">'
                ' <input type="submit" value="&rarr;" id="login"></td></tr></table></form>')

    def logout_box(self, request: Request) -> str:
        return ('<form method="post" action="/general/logout.html" id="logout-form">'
                f'<input type="hidden" name="CSRFToken" value="{esc(self.csrf(request))}">'
                '<input type="submit" value="Logout" id="logout"></form>')

    async def root(self, request: Request) -> Response:
        return redirect("/general/status.html", 301)

    async def status(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.login(request)
        box = self.logout_box(request) if self.session(request) else \
            self.login_box("/general/status.html", "")
        return self.page("Status", box + self.status_html())

    async def login(self, request: Request) -> Response:
        form = await request.form()
        token = form.get("CSRFToken")
        loginurl = form.get("loginurl", "/general/status.html")
        if not loginurl.startswith("/") or loginurl.startswith("//"):
            loginurl = "/general/status.html"
        if token is not None and not hmac.compare_digest(token, self.anonymous_csrf):
            return self.page("Status", self.login_box(loginurl, "The page has expired; "
                                                      "reload it and log in again."), 403)
        password = form.get(self.password_field)
        if password is None or not hmac.compare_digest(password, PASSWORD):
            self.ctx.log("Web login failed", "warning")
            return self.page("Status", self.login_box(loginurl, "Login Error: wrong password."))
        cookie = secrets.token_hex(16)
        self.sessions[cookie] = secrets.token_urlsafe(24)
        self.ctx.log("Web administrator logged in")
        return redirect(loginurl, 301, [("Set-Cookie", f"AuthCookie={cookie}; Path=/; HttpOnly")])

    async def logout(self, request: Request) -> Response:
        session = self.session(request)
        if session:
            self.sessions.pop(session, None)
        return redirect("/general/status.html", 301,
                        [("Set-Cookie", "AuthCookie=; Path=/; Max-Age=0")])

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            if not hmac.compare_digest(form.get("CSRFToken", ""), self.csrf(request)):
                return self.settings_page(request, "", "The CSRF token is missing or wrong; "
                                          "reload the page and submit again.", 403)
            error = self.apply_settings(form)
            if error:
                return self.settings_page(request, "", error, 400)
            return redirect("/general/contact.html?saved=1", 301)
        return self.settings_page(request, "Settings saved." if request.arg("saved") else "", "")

    def settings_page(self, request: Request, message: str, error: str,
                      status: int = 200) -> Response:
        note = f'<div class="err">{esc(error)}</div>' if error else ""
        form = self.settings_form_html("/general/contact.html", message=message,
                                       hidden={"CSRFToken": self.csrf(request)})
        return self.page("Contact & Location", self.logout_box(request) + note + form, status)

    async def firmware(self, request: Request) -> Response:
        form = self.firmware_form_html("/admin/firmware_upload.html",
                                       hidden={"CSRFToken": self.csrf(request)})
        return self.page("Firmware Update", form)

    async def upload(self, request: Request) -> Response:
        return await self.firmware_upload(request, require=("CSRFToken", self.csrf(request)))

    async def logs(self, request: Request) -> Response:
        return self.page("Log", self.logs_html("/general/log_download.html"))

    async def download(self, request: Request) -> Response:
        return self.log_download(request, "brother.log")
