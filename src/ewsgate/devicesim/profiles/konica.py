"""``konica``: one administrator session at a time (Konica Minolta PageScope Web Connection-like).

Quirks reproduced (sources in docs/devicesim.md):

* Administrator login (``/wcd/login.cgi``, password ``1234567812345678``) opens **the** admin
  session, identified by the cookie ``ID``. While it is active, a login from any other client
  (another cookie) is refused with "Another administrator has logged on." and the control
  panel is shown as locked. The same client may log in again.
* Logout (``/wcd/logout.cgi``) frees the session at once.
* The session **auto-logs out** after ``admin_idle_seconds`` without a request (the device's
  default is 10 minutes; ``--admin-idle-seconds``). Every admin page view counts as activity.
  A relay that retries, prefetches or keeps its own session alive changes who holds the lock.
* Admin pages poll ``/wcd/admin/keepalive.cgi`` from JavaScript every 10 s. The poll is not
  activity (it does not postpone the auto-logout) but proves the browser is still there: when
  it stops (the browser was closed without Logout), the lock is released after **70 s**.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin
from ewsgate.devicesim.state import DeviceContext
from ewsgate.devicesim.web import Request, Response, esc, redirect

__all__ = ["ADMIN_PASSWORD", "KEEPALIVE", "LOCK_WITHOUT_BROWSER", "REFUSED", "KonicaProfile"]

ADMIN_PASSWORD = "1234567812345678"
REFUSED = "Another administrator has logged on. Please try again later."
#: seconds without a keep-alive poll after which a vanished browser's lock is released
LOCK_WITHOUT_BROWSER = 70.0
KEEPALIVE = "/wcd/admin/keepalive.cgi"


@dataclass
class _AdminSession:
    token: str
    last_seen: float
    last_beat: float
    peer: str


class KonicaProfile(Profile):
    info = ProfileInfo(
        name="konica", make="KONICA MINOLTA", model="bizhub C300i", serial="AA2J021012345",
        mac="00:20:6b:7a:8b:9c", snmp_vendor="konica", server="Web-Server/1.0",
        hostname_prefix="KM", firmware="GC7-20",
        summary="Single admin session: a second admin login is refused while one is active; "
                "logout frees it; auto-logout after an idle time")
    skin = Skin(logo="KONICA MINOLTA", product_line="PageScope Web Connection",
                header_bg="#003c78", accent="#0050a0", font="Arial, sans-serif")

    def __init__(self, ctx: DeviceContext) -> None:
        self.admin: _AdminSession | None = None
        super().__init__(ctx)

    def setup(self) -> None:
        r = self.router
        r.add("/", self.root)
        r.add("/wcd/index.html", self.index)
        r.add("/wcd/login.cgi", self.login, ("POST",))
        r.add("/wcd/logout.cgi", self.logout, ("GET", "POST"))
        r.add("/wcd/admin/system.html", self.settings, ("GET", "POST"))
        r.add("/wcd/admin/firmware.html", self.firmware)
        r.add("/wcd/admin/firmware_upload.cgi", self.upload, ("POST",))
        r.add("/wcd/admin/log.html", self.logs)
        r.add("/wcd/admin/log_download.cgi", self.download)
        r.add(KEEPALIVE, self.keepalive)

    def nav(self) -> list[tuple[str, str]]:
        return [("Information", "/wcd/index.html"), ("System Settings", "/wcd/admin/system.html"),
                ("Firmware Update", "/wcd/admin/firmware.html"), ("Log", "/wcd/admin/log.html")]

    def _active(self) -> _AdminSession | None:
        """The admin session, after applying the idle auto-logout and the lost-browser rule."""
        now = self.ctx.clock.monotonic()
        if self.admin is not None and now - self.admin.last_seen > \
                self.ctx.config.admin_idle_seconds:
            self.ctx.log("Administrator automatically logged out (idle)")
            self.admin = None
        elif self.admin is not None and now - self.admin.last_beat > LOCK_WITHOUT_BROWSER:
            self.ctx.log("Administrator browser gone (no keep-alive); control panel unlocked")
            self.admin = None
        return self.admin

    def is_admin(self, request: Request) -> bool:
        session = self._active()
        token = request.cookies.get("ID", "")
        return session is not None and hmac.compare_digest(token, session.token)

    async def handle(self, request: Request) -> Response:
        if request.path.startswith("/wcd/admin/"):
            if not self.is_admin(request):
                return redirect("/wcd/index.html?timeout=1", 302, [("Server", self.info.server)])
            assert self.admin is not None
            now = self.ctx.clock.monotonic()
            self.admin.last_beat = now
            if request.path != KEEPALIVE:  # the poll proves presence, not activity
                self.admin.last_seen = now
        response = await super().handle(request)
        assert isinstance(response, Response)
        return response

    async def root(self, request: Request) -> Response:
        return redirect("/wcd/index.html", 302)

    def login_form(self) -> str:
        return ('<form method="post" action="/wcd/login.cgi" id="login-form">'
                '<input type="hidden" name="R_ADM" value="Admin">'
                '<table class="grid"><tr><th>Administrator Password</th><td>'
                '<input type="password" name="password" id="password" size="24"></td></tr></table>'
                '<p><input type="submit" value="Login" id="login"></p></form>')

    async def index(self, request: Request) -> Response:
        session = self._active()
        notes = ""
        if request.arg("timeout"):
            notes += ('<div class="err" id="timeout">You are not logged in as administrator, '
                      "or the session was logged out automatically.</div>")
        lock = ("locked (an administrator is logged on)" if session is not None
                else "available")
        admin = self.admin_bar() if self.is_admin(request) else self.login_form()
        body = (f'{notes}<p>Control panel: <b id="panel-lock">{lock}</b></p>{admin}'
                + self.status_html())
        return self.page("Information", body)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not hmac.compare_digest(form.get("password", ""), ADMIN_PASSWORD):
            self.ctx.log("Administrator login failed", "warning")
            return self.page("Login", '<div class="err" id="login-error">The password is '
                             "incorrect.</div>" + self.login_form())
        session = self._active()
        if session is not None and not self.is_admin(request):
            self.ctx.log(f"Administrator login refused for {request.peer}: session held by "
                         f"{session.peer}", "warning")
            return self.page("Login", f'<div class="err" id="login-refused">{esc(REFUSED)}</div>'
                             + self.login_form())
        token = session.token if session is not None else secrets.token_hex(16)
        now = self.ctx.clock.monotonic()
        self.admin = _AdminSession(token, now, now, request.peer)
        self.ctx.log("Administrator logged on; control panel locked")
        return redirect("/wcd/admin/system.html", 302,
                        [("Set-Cookie", f"ID={token}; Path=/; HttpOnly")])

    async def logout(self, request: Request) -> Response:
        if self.is_admin(request):
            self.admin = None
            self.ctx.log("Administrator logged off; control panel unlocked")
        return redirect("/wcd/index.html", 302, [("Set-Cookie", "ID=; Path=/; Max-Age=0")])

    def admin_bar(self) -> str:
        idle = self.ctx.config.admin_idle_seconds
        return (f'<p>Administrator mode (auto logout after {idle:.0f} s idle) &middot; '
                '<a href="/wcd/logout.cgi" id="logout">Logout</a></p>'
                "<script>setInterval(function () {"
                f"fetch('{KEEPALIVE}', {{credentials: 'same-origin', cache: 'no-store'}});"
                "}, 10000);</script>")

    async def keepalive(self, request: Request) -> Response:
        return Response(204, [("Cache-Control", "no-store")])

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            error = self.apply_settings(await request.form())
            if error:
                return self.page("System Settings", f'<div class="err">{esc(error)}</div>', 400)
            return redirect("/wcd/admin/system.html?saved=1", 302)
        message = "The settings were registered." if request.arg("saved") else ""
        return self.page("System Settings", self.admin_bar() + self.settings_form_html(
            "/wcd/admin/system.html", message=message))

    async def firmware(self, request: Request) -> Response:
        return self.page("Firmware Update", self.admin_bar()
                         + self.firmware_form_html("/wcd/admin/firmware_upload.cgi"))

    async def upload(self, request: Request) -> Response:
        return await self.firmware_upload(request)

    async def logs(self, request: Request) -> Response:
        return self.page("Log", self.admin_bar()
                         + self.logs_html("/wcd/admin/log_download.cgi"))

    async def download(self, request: Request) -> Response:
        return self.log_download(request, "bizhub.log")
