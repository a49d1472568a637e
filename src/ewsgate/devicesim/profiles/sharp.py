"""``sharp``: framesets and HTTP authentication prompts (older Sharp MX models alike).

Quirks reproduced (sources in docs/devicesim.md):

* ``/`` is a **frameset** (a menu frame and a main frame), as on older Sharp models.
* The admin pages (``/admin/...``) answer ``401`` with three challenges, strongest first:
  ``Digest algorithm=SHA-256``, ``Digest algorithm=MD5`` (both ``qop="auth"``) and ``Basic``
  (RFC 7616, 7617). The browser shows its own credentials prompt, which must work through a
  relay (it must pass ``WWW-Authenticate`` and ``Authorization`` unchanged and keep the request
  URI the Digest response was computed over). Nonces are tracked: a replayed nonce count is
  refused and an expired nonce gets ``stale=true``.
* The user pages (``/user/...``) offer **Basic only** (realm ``user``), the plain prompt.
* Users: ``admin``/``admin`` (administrator) and ``user``/``users`` (user pages).
"""

from __future__ import annotations

from ewsgate.devicesim.http_auth import HttpAuthenticator
from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin
from ewsgate.devicesim.state import DeviceContext
from ewsgate.devicesim.web import Request, Response, esc, html_response, redirect

__all__ = ["SharpProfile"]

ADMIN_USERS = {"admin": "admin"}
USER_USERS = {"user": "users", "admin": "admin"}


class SharpProfile(Profile):
    info = ProfileInfo(
        name="sharp", make="SHARP", model="MX-M3071", serial="05012345",
        mac="00:22:f3:0a:1b:2c", snmp_vendor="sharp", server="Rapid Logic/1.1",
        hostname_prefix="SHARP", firmware="1.02.B1",
        summary="Framesets; HTTP Digest (SHA-256, MD5, qop=auth, nonce tracking) and Basic on "
                "the admin pages, Basic only on the user pages")
    skin = Skin(logo="SHARP", product_line="Device Web Page", header_bg="#e60012",
                accent="#333399", font="Tahoma, Arial, sans-serif")

    def __init__(self, ctx: DeviceContext) -> None:
        self.admin_auth = HttpAuthenticator("Sharp MX-M3071 admin", ADMIN_USERS, ctx.clock)
        self.user_auth = HttpAuthenticator("user", USER_USERS, ctx.clock, schemes=("Basic",))
        super().__init__(ctx)

    def setup(self) -> None:
        r = self.router
        r.add("/", self.root)
        r.add("/menu.html", self.menu)
        r.add("/main.html", self.status)
        r.add("/admin/settings.html", self.settings, ("GET", "POST"))
        r.add("/admin/firmware.html", self.firmware)
        r.add("/admin/firmware_upload.html", self.upload, ("POST",))
        r.add("/admin/logs.html", self.logs)
        r.add("/admin/log_download.html", self.download)
        r.add("/user/jobs.html", self.jobs)

    async def handle(self, request: Request) -> Response:
        for prefix, auth in (("/admin/", self.admin_auth), ("/user/", self.user_auth)):
            if request.path.startswith(prefix):
                result = auth.check(request.method, request.target,
                                    request.header("authorization"))
                if result.user is None:
                    if request.header("authorization"):
                        self.ctx.log(f"Authentication failed: {result.reason}", "warning")
                    return self.unauthorized(auth, stale=result.stale)
        response = await self.router.dispatch(request)
        assert isinstance(response, Response)
        response.headers.append(("Server", self.info.server))
        return response

    def unauthorized(self, auth: HttpAuthenticator, *, stale: bool) -> Response:
        body = ("<html><head><title>401 Unauthorized</title></head><body>"
                "<h1>Unauthorized</h1><p>Enter the user name and password of the "
                f"{esc(auth.realm)} account.</p></body></html>")
        return html_response(body, 401, [*auth.challenges(stale=stale),
                                         ("Server", self.info.server)])

    def nav(self) -> list[tuple[str, str]]:
        return []

    def frame(self, title: str, body: str, status: int = 200) -> Response:
        return html_response(
            f"<html><head><title>{esc(title)}</title><style>{self.css()}</style></head>"
            f'<body style="background:#fff;padding:8px"><h1>{esc(title)}</h1>{body}</body></html>',
            status)

    async def root(self, request: Request) -> Response:
        return html_response(
            '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Frameset//EN">\n<html><head>'
            f"<title>{esc(self.info.make)} {esc(self.info.model)}</title></head>"
            '<frameset cols="190,*" frameborder="1">'
            '<frame src="/menu.html" name="menu" id="menu-frame">'
            '<frame src="/main.html" name="main" id="main-frame">'
            "<noframes>This page uses frames.</noframes></frameset></html>")

    async def menu(self, request: Request) -> Response:
        links = [("Status", "/main.html"), ("Job Status (user)", "/user/jobs.html"),
                 ("System Settings (admin)", "/admin/settings.html"),
                 ("Firmware Update (admin)", "/admin/firmware.html"),
                 ("Logs (admin)", "/admin/logs.html")]
        items = "".join(f'<a href="{h}" target="main">{esc(label)}</a>' for label, h in links)
        return html_response(
            f"<html><head><style>{self.css()}</style></head><body style=\"background:#fff\">"
            f'<header><span class="logo">SHARP</span></header>'
            f'<nav style="float:none;width:auto">{items}</nav></body></html>')

    async def status(self, request: Request) -> Response:
        return self.frame("Device Status", self.status_html())

    async def jobs(self, request: Request) -> Response:
        return self.frame("Job Status", '<table class="grid" id="jobs"><tr><th>Job</th>'
                          "<td>No jobs are waiting.</td></tr></table>")

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            error = self.apply_settings(await request.form())
            if error:
                return self.frame("System Settings", f'<div class="err">{esc(error)}</div>', 400)
            return redirect("/admin/settings.html?saved=1", 303)
        message = "Settings were submitted." if request.arg("saved") else ""
        return self.frame("System Settings",
                          self.settings_form_html("/admin/settings.html", message=message))

    async def firmware(self, request: Request) -> Response:
        return self.frame("Firmware Update",
                          self.firmware_form_html("/admin/firmware_upload.html"))

    async def upload(self, request: Request) -> Response:
        return await self.firmware_upload(request)

    async def logs(self, request: Request) -> Response:
        return self.frame("Logs", self.logs_html("/admin/log_download.html"))

    async def download(self, request: Request) -> Response:
        return self.log_download(request, "sharp_log.txt")
