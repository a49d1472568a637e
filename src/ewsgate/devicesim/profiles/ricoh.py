"""``ricoh``: frames, a JavaScript jump and a base64 login (Ricoh Web Image Monitor-like).

Quirks reproduced (sources in docs/devicesim.md):

* ``/`` is a tiny page whose script sets ``location.href`` to the locale path
  ``/web/guest/en/websys/webArch/mainFrame.cgi``; no HTTP redirect, so only a browser gets there.
* ``mainFrame.cgi`` is a **frameset** (header, menu, work area), each frame its own URL.
* ``/`` sets the cookies ``risessionid`` and ``wimsesid=--`` (not logged in); the frameset's
  script sets ``cookieOnOffChecker=on``. ``authForm.cgi`` refuses to show the login form unless
  that cookie comes back ("cookies are disabled") and carries a hidden ``wimToken``.
* The login form's script **base64-encodes** user name and password into hidden ``userid`` and
  ``password`` before posting to ``login.cgi``; success is a ``302`` to
  ``/web/entry/en/websys/webArch/mainFrame.cgi`` setting ``wimsesid=<random>``.
* ``/web/entry/...`` pages need a live ``wimsesid``; without one they send the browser back to
  the guest frameset.
* A request-target longer than 1024 bytes is refused with **414** (the design guide says the
  device rejects over-long URLs; a relay that adds prefixes or tokens to URLs breaks here).
* ``Server: Web-Server/3.0``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets

from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin
from ewsgate.devicesim.state import DeviceContext
from ewsgate.devicesim.web import Request, Response, esc, html_response, redirect, text_response

__all__ = ["MAX_TARGET", "RicohProfile"]

MAX_TARGET = 1024
ADMIN = ("admin", "")  # Ricoh's factory administrator: user "admin", empty password

_GUEST = "/web/guest/en/websys/webArch"
_ENTRY = "/web/entry/en/websys/webArch"
_CONF = "/web/entry/en/websys/config"


class RicohProfile(Profile):
    info = ProfileInfo(
        name="ricoh", make="RICOH", model="IM C3000", serial="3100R810123",
        mac="00:26:73:5a:7b:9c", snmp_vendor="ricoh", server="Web-Server/3.0",
        hostname_prefix="RNP", firmware="1.10",
        summary="Frames: / jumps by JavaScript to a frameset; cookie check, wimToken, base64 "
                "login, wimsesid session cookie; request-targets over 1024 bytes get 414")
    skin = Skin(logo="RICOH", product_line="Web Image Monitor", header_bg="#c8102e",
                accent="#a50d25", font="Arial, sans-serif")

    def __init__(self, ctx: DeviceContext) -> None:
        self.sessions: set[str] = set()
        self.tokens: set[str] = set()
        super().__init__(ctx)

    def setup(self) -> None:
        r = self.router
        r.add("/", self.root)
        for area in (_GUEST, _ENTRY):
            r.add(f"{area}/mainFrame.cgi", self.main_frame)
            r.add(f"{area}/header.cgi", self.header)
            r.add(f"{area}/menu.cgi", self.menu)
            r.add(f"{area}/topPage.cgi", self.top_page)
        r.add(f"{_GUEST}/authForm.cgi", self.auth_form)
        r.add(f"{_GUEST}/login.cgi", self.login, ("POST",))
        r.add(f"{_ENTRY}/logout.cgi", self.logout, ("GET", "POST"))
        r.add(f"{_CONF}/deviceInfo.cgi", self.settings, ("GET", "POST"))
        r.add(f"{_CONF}/firmware.cgi", self.firmware)
        r.add(f"{_CONF}/firmwareUpload.cgi", self.upload, ("POST",))
        r.add(f"{_CONF}/jobLog.cgi", self.logs)
        r.add(f"{_CONF}/jobLogDownload.cgi", self.download)

    async def handle(self, request: Request) -> Response:
        if len(request.target.encode("latin-1")) > MAX_TARGET:
            response = text_response(
                "414 Request-URI Too Long\n", 414, headers=[("Connection", "close")])
        elif request.path.startswith(("/web/entry/",)) and not self.logged_in(request):
            response = redirect(f"{_GUEST}/mainFrame.cgi", 302)
        else:
            response = await self.router.dispatch(request)  # type: ignore[assignment]
        response.headers.append(("Server", self.info.server))
        return response

    def logged_in(self, request: Request) -> bool:
        return request.cookies.get("wimsesid", "--") in self.sessions

    def area(self, request: Request) -> str:
        return _ENTRY if self.logged_in(request) else _GUEST

    async def root(self, request: Request) -> Response:
        html = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
                "<title>Web Image Monitor</title><script type=\"text/javascript\">\n"
                f"location.href = '{_GUEST}/mainFrame.cgi';\n</script></head>"
                "<body><noscript>Enable JavaScript to use Web Image Monitor.</noscript>"
                "</body></html>")
        cookies = [("Set-Cookie", f"risessionid={secrets.randbelow(10**12):012d}; path=/")]
        if "wimsesid" not in request.cookies:
            cookies.append(("Set-Cookie", "wimsesid=--; path=/"))
        return html_response(html, headers=cookies)

    async def main_frame(self, request: Request) -> Response:
        area = self.area(request)
        html = (
            '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Frameset//EN" '
            '"http://www.w3.org/TR/html4/frameset.dtd">\n<html><head>'
            '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
            f"<title>Web Image Monitor - {esc(self.info.model)}</title>"
            '<script type="text/javascript">document.cookie = "cookieOnOffChecker=on; path=/";'
            "</script></head>"
            '<frameset rows="64,*" border="0" frameborder="0">'
            f'<frame name="header" src="{area}/header.cgi" scrolling="no" noresize>'
            '<frameset cols="200,*" border="0" frameborder="0">'
            f'<frame name="menu" src="{area}/menu.cgi">'
            f'<frame name="work" src="{area}/topPage.cgi">'
            "</frameset></frameset></html>")
        return html_response(html)

    def frame(self, title: str, body: str) -> Response:
        return html_response(
            f"<html><head><title>{esc(title)}</title><style>{self.css()}</style></head>"
            f'<body style="background:#fff;padding:8px">{body}</body></html>')

    async def header(self, request: Request) -> Response:
        if self.logged_in(request):
            action = (f'Administrator <a href="{_ENTRY}/logout.cgi" target="_top" '
                      'id="logout">Logout</a>')
        else:
            action = f'<a href="{_GUEST}/authForm.cgi" target="work" id="login-link">Login</a>'
        return self.frame("header", f'<header><span class="logo">RICOH</span>'
                          f'<span class="model">Web Image Monitor {esc(self.info.model)}</span>'
                          f'<span class="model" style="margin-left:auto">{action}</span></header>')

    async def menu(self, request: Request) -> Response:
        links = [("Home", f"{self.area(request)}/topPage.cgi")]
        if self.logged_in(request):
            links += [("Device Information", f"{_CONF}/deviceInfo.cgi"),
                      ("Firmware Update", f"{_CONF}/firmware.cgi"),
                      ("Job Log", f"{_CONF}/jobLog.cgi")]
        items = "".join(f'<a href="{h}" target="work">{esc(label)}</a>' for label, h in links)
        return self.frame("menu", f'<nav style="float:none;width:auto">{items}</nav>')

    async def top_page(self, request: Request) -> Response:
        return self.frame("Status", f"<h1>Status</h1>{self.status_html()}")

    async def auth_form(self, request: Request) -> Response:
        if request.cookies.get("cookieOnOffChecker") != "on":
            return self.frame("Login", '<div class="err" id="cookie-error">Cookies are disabled. '
                              "Enable cookies in the browser and log in again.</div>")
        token = secrets.token_hex(16)
        self.tokens.add(token)
        script = ("function doLogin(f){f.userid.value=btoa(f.userid_work.value);"
                  "f.password.value=btoa(f.password_work.value);"
                  "f.userid_work.value='';f.password_work.value='';return true;}")
        return self.frame("Login", (
            f"<script>{script}</script><h1>Login</h1>"
            f'<form method="post" action="{_GUEST}/login.cgi" target="_top" id="login-form" '
            'onsubmit="return doLogin(this)">'
            f'<input type="hidden" name="wimToken" value="{token}">'
            '<input type="hidden" name="userid" value=""><input type="hidden" name="password" '
            'value=""><input type="hidden" name="open" value="">'
            '<table class="grid"><tr><th>Login User Name</th><td><input name="userid_work" '
            'id="userid_work"></td></tr><tr><th>Login Password</th><td><input type="password" '
            'name="password_work" id="password_work"></td></tr></table>'
            '<p><input type="submit" value="Login" id="login"></p></form>'))

    async def login(self, request: Request) -> Response:
        form = await request.form()
        token = form.get("wimToken", "")
        if token not in self.tokens:
            return self.frame("Login", '<div class="err" id="login-error">The session has '
                              "timed out. Log in again.</div>")
        self.tokens.discard(token)
        try:
            user = base64.b64decode(form.get("userid", ""), validate=True).decode()
            password = base64.b64decode(form.get("password", ""), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", "\x00"
        if not (hmac.compare_digest(user, ADMIN[0]) and hmac.compare_digest(password, ADMIN[1])):
            self.ctx.log("Login failed for user " + repr(user), "warning")
            return self.frame("Login", '<div class="err" id="login-error">Authentication has '
                              f'failed. <a href="{_GUEST}/authForm.cgi">Back</a></div>')
        session = secrets.token_hex(16)
        self.sessions.add(session)
        self.ctx.log("Administrator logged in")
        return redirect(f"{_ENTRY}/mainFrame.cgi", 302,
                        [("Set-Cookie", f"wimsesid={session}; path=/")])

    async def logout(self, request: Request) -> Response:
        self.sessions.discard(request.cookies.get("wimsesid", ""))
        return redirect(f"{_GUEST}/mainFrame.cgi", 302, [("Set-Cookie", "wimsesid=--; path=/")])

    async def settings(self, request: Request) -> Response:
        message = ""
        if request.method == "POST":
            error = self.apply_settings(await request.form())
            if error:
                return self.frame("Device Information", f'<div class="err">{esc(error)}</div>')
            message = "The settings were applied."
        return self.frame("Device Information", "<h1>Device Information</h1>"
                          + self.settings_form_html(f"{_CONF}/deviceInfo.cgi", message=message))

    async def firmware(self, request: Request) -> Response:
        return self.frame("Firmware Update", "<h1>Firmware Update</h1>"
                          + self.firmware_form_html(f"{_CONF}/firmwareUpload.cgi"))

    async def upload(self, request: Request) -> Response:
        return await self.firmware_upload(request)

    async def logs(self, request: Request) -> Response:
        return self.frame("Job Log", "<h1>Job Log</h1>"
                          + self.logs_html(f"{_CONF}/jobLogDownload.cgi"))

    async def download(self, request: Request) -> Response:
        return self.log_download(request, "joblog.csv")
