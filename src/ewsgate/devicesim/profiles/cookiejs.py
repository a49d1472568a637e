"""``cookiejs``: a login page that reads and writes its own cookies in JavaScript.

Several embedded web servers check and carry state in cookies from script rather than (only)
from headers: Ricoh's ``cookieOnOffChecker``, Lexmark's and Kyocera's language and user cookies,
login pages that refuse to show the form until a test cookie written by script reads back.
A relay that renames or filters cookies must keep all of it working. Quirks reproduced:

* ``/login.html``'s script writes ``cookie_check=1`` and reads ``document.cookie`` back; only
  if it is there is the form shown (``#login-form``), else "Cookies are disabled"
  (``#cookie-error``).
* Submitting writes ``ews_user=<name>`` (the device's path, ``/``) and ``ews_lang=<lang>``
  (``Max-Age``) from script before posting to ``/login.cgi``, which **requires** both
  script-written cookies to arrive (``cookie_check`` and an ``ews_user`` equal to the posted
  name; else ``#login-error``) and the password ``admin``; it then sets ``EWSSESSION``
  (``HttpOnly``) and ``ews_theme`` (readable by script, ``Path=/app``) and redirects to
  ``/app/status.html``.
* ``/app/status.html`` (session required) shows, from script, who is signed in (``#who``), the
  language (``#lang``), the theme set by header (``#theme``) and whether the session cookie is
  hidden from script (``#session-hidden``: ``hidden``).
* ``/logout.html`` ends the session; its script deletes ``ews_user`` (an ``expires`` in the past).
* ``/cookies.json``: the cookies this request carried, by name (what the device received).
"""

from __future__ import annotations

import secrets

from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin
from ewsgate.devicesim.state import DeviceContext
from ewsgate.devicesim.web import Request, Response, esc, json_response, redirect

__all__ = ["PASSWORD", "CookieJsProfile"]

PASSWORD = "admin"

_LOGIN_JS = """
document.cookie = "cookie_check=1; path=/";
var ok = document.cookie.split("; ").indexOf("cookie_check=1") !== -1;
document.getElementById(ok ? "login-form" : "cookie-error").style.display = "block";
document.getElementById("login-form").onsubmit = function () {
  var user = document.getElementById("user").value;
  document.cookie = "ews_user=" + encodeURIComponent(user) + "; path=/";
  document.cookie = "ews_lang=" + document.getElementById("language").value + "; max-age=3600";
  return true;
};
"""

_STATUS_JS = """
function cookie(name) {
  var all = document.cookie.split("; ");
  for (var i = 0; i < all.length; i++) {
    var k = all[i].indexOf("=");
    if (all[i].slice(0, k) === name) { return decodeURIComponent(all[i].slice(k + 1)); }
  }
  return "";
}
document.getElementById("who").textContent = cookie("ews_user") || "(nobody)";
document.getElementById("lang").textContent = cookie("ews_lang") || "(none)";
document.getElementById("theme").textContent = cookie("ews_theme") || "(none)";
document.getElementById("session-hidden").textContent =
  cookie("EWSSESSION") ? "visible" : "hidden";
"""


class CookieJsProfile(Profile):
    info = ProfileInfo(
        name="cookiejs", make="Lexmark", model="MX622adhe", serial="7018123456789",
        mac="00:21:b7:5a:6b:7c", snmp_vendor="lexmark", server="Lexmark_Web_Server",
        hostname_prefix="LXK", firmware="MXTGW.230.037",
        summary="Login page writes and reads cookies in JavaScript (cookie check, user and "
                "language); the server requires them; status page reads header and script "
                "cookies")
    skin = Skin(logo="Lexmark", product_line="Embedded Web Server", header_bg="#1e3a5f",
                accent="#2a7ab0", font="Arial, Helvetica, sans-serif")

    def __init__(self, ctx: DeviceContext) -> None:
        self.sessions: set[str] = set()
        super().__init__(ctx)

    def setup(self) -> None:
        r = self.router
        r.add("/", self.root)
        r.add("/login.html", self.login_page)
        r.add("/login.cgi", self.login, ("POST",))
        r.add("/logout.html", self.logout)
        r.add("/cookies.json", self.cookies)
        r.add("/app/status.html", self.status)
        r.add("/app/settings.html", self.settings, ("GET", "POST"))
        r.add("/app/firmware.html", self.firmware)
        r.add("/app/firmware_upload.cgi", self.upload, ("POST",))
        r.add("/app/logs.html", self.logs)
        r.add("/app/log_download.cgi", self.download)

    def nav(self) -> list[tuple[str, str]]:
        return [("Status", "/app/status.html"), ("Settings", "/app/settings.html"),
                ("Firmware", "/app/firmware.html"), ("Logs", "/app/logs.html"),
                ("Log out", "/logout.html")]

    def _signed_in(self, request: Request) -> bool:
        return request.cookies.get("EWSSESSION", "") in self.sessions

    async def root(self, request: Request) -> Response:
        return redirect("/login.html", 302)

    def _login_html(self, error: str = "") -> Response:
        note = f'<div class="err" id="login-error">{esc(error)}</div>' if error else ""
        body = (
            f"{note}"
            '<div class="err" id="cookie-error" style="display:none">Cookies are disabled. '
            "Enable cookies in the browser to log in.</div>"
            '<form method="post" action="/login.cgi" id="login-form" style="display:none">'
            '<table class="grid"><tr><th>User name</th><td><input name="user" id="user">'
            '</td></tr><tr><th>Password</th><td><input type="password" name="password" '
            'id="password"></td></tr><tr><th>Language</th><td><select id="language">'
            '<option value="en">English</option><option value="de">Deutsch</option>'
            "</select></td></tr></table>"
            '<p><input type="submit" value="Log In" id="login"></p></form>'
            f"<script>{_LOGIN_JS}</script>")
        return self.page("Log In", body)

    async def login_page(self, request: Request) -> Response:
        return self._login_html()

    async def login(self, request: Request) -> Response:
        form = await request.form()
        user = form.get("user", "")
        if request.cookies.get("cookie_check") != "1" or not user or (
                request.cookies.get("ews_user") != user):
            self.ctx.log("login refused: the script-written cookies did not arrive")
            return self._login_html("The login page's cookies did not arrive; enable cookies "
                                    "and log in again.")
        if form.get("password") != PASSWORD:
            return self._login_html("Wrong user name or password.")
        token = secrets.token_hex(16)
        self.sessions.add(token)
        self.ctx.log(f"user {user} logged in")
        return redirect("/app/status.html", 303, headers=[
            ("Set-Cookie", f"EWSSESSION={token}; Path=/; HttpOnly"),
            ("Set-Cookie", "ews_theme=blue; Path=/app")])

    async def logout(self, request: Request) -> Response:
        self.sessions.discard(request.cookies.get("EWSSESSION", ""))
        body = ('<p id="logged-out">Logged out.</p><script>document.cookie = '
                '"ews_user=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/";</script>'
                '<p><a href="/login.html">Log in again</a></p>')
        return self.page("Log Out", body, headers=[
            ("Set-Cookie", "EWSSESSION=; Path=/; Max-Age=0")])

    async def cookies(self, request: Request) -> Response:
        return json_response(request.cookies)

    def _guarded(self, request: Request) -> Response | None:
        return None if self._signed_in(request) else redirect("/login.html", 302)

    async def status(self, request: Request) -> Response:
        if (refusal := self._guarded(request)) is not None:
            return refusal
        body = ('<p>Signed in as <b id="who">…</b>, language <b id="lang">…</b>, theme '
                '<b id="theme">…</b>; session cookie <b id="session-hidden">…</b> from script.'
                f"</p>{self.status_html()}<script>{_STATUS_JS}</script>")
        return self.page("Status", body)

    async def settings(self, request: Request) -> Response:
        if (refusal := self._guarded(request)) is not None:
            return refusal
        if request.method == "POST":
            error = self.apply_settings(await request.form())
            if error:
                return self.page("Settings", f'<div class="err">{esc(error)}</div>', 400)
            return redirect("/app/settings.html?saved=1", 303)
        message = "Saved." if request.arg("saved") else ""
        return self.page("Settings", self.settings_form_html("/app/settings.html",
                                                             message=message))

    async def firmware(self, request: Request) -> Response:
        if (refusal := self._guarded(request)) is not None:
            return refusal
        return self.page("Firmware", self.firmware_form_html("/app/firmware_upload.cgi"))

    async def upload(self, request: Request) -> Response:
        if (refusal := self._guarded(request)) is not None:
            return refusal
        return await self.firmware_upload(request)

    async def logs(self, request: Request) -> Response:
        if (refusal := self._guarded(request)) is not None:
            return refusal
        return self.page("Logs", self.logs_html("/app/log_download.cgi"))

    async def download(self, request: Request) -> Response:
        if (refusal := self._guarded(request)) is not None:
            return refusal
        return self.log_download(request, "lexmark.log")
