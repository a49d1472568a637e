"""``absolute``: pages that name the device by its own address everywhere (Kyocera-like UI).

Quirks reproduced (the CUPS/WLED/ESPEasy pattern in docs/devicesim.md): the device writes its
own address, as it believes it to be (``--advertised-host`` and the bound port), into

* ``Location`` headers: ``/`` → ``302 http://<device-ip>:<port>/app/index.html``;
* HTML: ``href``/``src``/``action`` attributes, a ``<base>``-free page full of
  ``http://<device-ip>/…`` links, and one link by the device's **host name**;
* CSS: ``url(http://<device-ip>/…)`` and ``@import url("http://<device-ip>/…")``;
* JavaScript: ``fetch("http://<device-ip>/…")`` and ``new WebSocket("ws://<device-ip>/…")``;
* JSON: self links;
* cookies: ``Domain=<device-ip>`` (which a browser on any other origin drops) and
  ``Path=/app``;
* a **gzip-compressed** HTML page (``/app/gz.html``) with absolute URLs inside, so a rewriter
  must decompress, rewrite and re-frame (or recompress) it.

A relay that does not rewrite these sends the browser to the device's private address, where
nothing answers, and loses the cookies.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import secrets
import time

from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin
from ewsgate.devicesim.web import (
    Request,
    Response,
    WebSocket,
    WebSocketResponse,
    esc,
    html_response,
    json_response,
    redirect,
)

__all__ = ["AbsoluteProfile"]

_LOGO = ('<svg xmlns="http://www.w3.org/2000/svg" width="120" height="24">'
         '<rect width="120" height="24" fill="#e0301e"/><text x="8" y="17" fill="#fff" '
         'font-family="Arial" font-size="14" font-weight="bold">KYOCERA</text></svg>')
_BG = ('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" '
       'fill="#f7f7f7"/><rect width="4" height="4" fill="#efefef"/></svg>')


class AbsoluteProfile(Profile):
    info = ProfileInfo(
        name="absolute", make="KYOCERA", model="ECOSYS M3655idn", serial="VCF9Z01234",
        mac="00:17:c8:3c:4d:5e", snmp_vendor="kyocera", server="KM-MFP-http/V0.0.1",
        hostname_prefix="KM", firmware="2S0_2000.004.212",
        summary="Absolute URLs: http://<device-ip>/ and ws://<device-ip>/ in Location, HTML, "
                "CSS, JS and JSON; host-name links; cookies with Domain=<device-ip>, Path=/app; "
                "a gzip-compressed page")
    skin = Skin(logo="KYOCERA", product_line="Command Center RX", header_bg="#5a5a5a",
                accent="#e0301e", font="Arial, sans-serif")

    def setup(self) -> None:
        r = self.router
        r.add("/", self.root)
        r.add("/app/index.html", self.index)
        r.add("/app/style.css", self.style)
        r.add("/app/print.css", self.print_style)
        r.add("/app/app.js", self.script)
        r.add("/app/logo.svg", self.logo)
        r.add("/app/bg.svg", self.background)
        r.add("/app/api/status.json", self.status_json)
        r.add("/app/ws/status", self.ws_status)
        r.add("/app/gz.html", self.gz_page)
        r.add("/app/settings.html", self.settings, ("GET", "POST"))
        r.add("/app/firmware.html", self.firmware)
        r.add("/app/firmware_upload.cgi", self.upload, ("POST",))
        r.add("/app/logs.html", self.logs)
        r.add("/app/log_download.cgi", self.download)

    def base(self, request: Request) -> str:
        return self.ctx.base_url(request.scheme)

    def layout_abs(self, request: Request, title: str, body: str) -> str:
        b = self.base(request)
        links = "".join(
            f'<a href="{b}{path}">{label}</a>'
            for label, path in (("Home", "/app/index.html"), ("Device Settings",
                                "/app/settings.html"), ("Firmware", "/app/firmware.html"),
                                ("Logs", "/app/logs.html"), ("Compressed page", "/app/gz.html")))
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>{esc(title)} - Command Center RX</title>"
            f'<link rel="stylesheet" href="{b}/app/style.css">'
            f'<script src="{b}/app/app.js" defer></script></head><body>'
            f'<header><img src="{b}/app/logo.svg" alt="KYOCERA" id="logo">'
            f'<span class="model">Command Center RX {esc(self.info.model)}</span></header>'
            f'<nav>{links}</nav><main><h1>{esc(title)}</h1>{body}'
            f'<p class="foot">Device address: <a id="host-link" '
            f'href="http://{esc(self.ctx.config.hostname)}/app/index.html">'
            f"http://{esc(self.ctx.config.hostname)}/</a> &middot; "
            f'<a id="ip-link" href="{b}/app/index.html">{b}/</a></p></main></body></html>')

    def cookie_headers(self, request: Request) -> list[tuple[str, str]]:
        host = self.ctx.config.advertised_host
        return [
            ("Set-Cookie", f"rtlang=en; Domain={host}; Path=/app"),
            ("Set-Cookie", f"rtsession={secrets.token_hex(8)}; Domain={host}; Path=/app; "
                           "HttpOnly"),
        ]

    async def root(self, request: Request) -> Response:
        return redirect(f"{self.base(request)}/app/index.html", 302)

    async def index(self, request: Request) -> Response:
        live = ('<table class="grid"><tr><th>Live status (fetch)</th><td id="live-status">'
                'loading…</td></tr><tr><th>Live status (WebSocket)</th><td id="ws-status">'
                "connecting…</td></tr></table>")
        return html_response(self.layout_abs(request, "Home", live + self.status_html()),
                             headers=self.cookie_headers(request))

    async def style(self, request: Request) -> Response:
        b = self.base(request)
        css = (f'@import url("{b}/app/print.css") print;\n'
               f"body{{background:url({b}/app/bg.svg) repeat}}\n"
               f"header{{background:#5a5a5a url('{b}/app/bg.svg') no-repeat right}}\n"
               + self.css().replace("body{", "body{background-repeat:repeat;", 1))
        return Response(200, [("Content-Type", "text/css")], css.encode())

    async def print_style(self, request: Request) -> Response:
        css = f"nav{{display:none}}\nheader{{background:url({self.base(request)}/app/logo.svg)}}\n"
        return Response(200, [("Content-Type", "text/css")], css.encode())

    async def script(self, request: Request) -> Response:
        b = self.base(request)
        ws = self.ctx.ws_url(request.scheme)
        js = (
            f'var DEVICE = "{b}";\nvar DEVICE_WS = "{ws}";\n'
            "function show(id, text){\n"
            "  var e = document.getElementById(id); if (e) { e.textContent = text; }\n}\n"
            "fetch(DEVICE + '/app/api/status.json', {credentials: 'include'})\n"
            "  .then(function(r){return r.json();})\n"
            "  .then(function(s){show('live-status', s.status + ' (' + s.serial + ')');})\n"
            "  .catch(function(e){show('live-status', 'error: ' + e);});\n"
            "try {\n"
            "  var ws = new WebSocket(DEVICE_WS + '/app/ws/status');\n"
            "  ws.onmessage = function(m){var s=JSON.parse(m.data); "
            "show('ws-status', s.status + ' #' + s.seq);};\n"
            "  ws.onerror = function(){show('ws-status', 'WebSocket error');};\n"
            "} catch (e) { show('ws-status', 'error: ' + e); }\n")
        return Response(200, [("Content-Type", "application/javascript")], js.encode())

    async def logo(self, request: Request) -> Response:
        return Response(200, [("Content-Type", "image/svg+xml")], _LOGO.encode())

    async def background(self, request: Request) -> Response:
        return Response(200, [("Content-Type", "image/svg+xml")], _BG.encode())

    async def status_json(self, request: Request) -> Response:
        b = self.base(request)
        return json_response({"status": "Ready", "serial": self.ctx.config.serial,
                              "model": self.info.model, "self": f"{b}/app/api/status.json",
                              "panel": f"{self.ctx.ws_url(request.scheme)}/app/ws/status"})

    async def ws_status(self, request: Request) -> WebSocketResponse:
        async def session(ws: WebSocket) -> None:
            seq = 0

            async def reader() -> None:
                while await ws.receive() is not None:
                    pass

            task = asyncio.create_task(reader())
            try:
                while not task.done():
                    seq += 1
                    await ws.send_text(json.dumps({"status": "Ready", "seq": seq,
                                                   "time": time.time()}))
                    await asyncio.wait([task], timeout=0.5)
            except ConnectionError:
                pass
            finally:
                task.cancel()

        return WebSocketResponse(session)

    async def gz_page(self, request: Request) -> Response:
        b = self.base(request)
        body = self.layout_abs(request, "Compressed page", (
            f'<p id="gz-marker">This page was sent gzip-compressed. It links to '
            f'<a id="gz-link" href="{b}/app/settings.html">{b}/app/settings.html</a>.</p>'))
        data = gzip.compress(body.encode(), mtime=0)
        return Response(200, [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")], data)

    async def settings(self, request: Request) -> Response:
        b = self.base(request)
        if request.method == "POST":
            error = self.apply_settings(await request.form())
            if error:
                return html_response(self.layout_abs(request, "Device Settings",
                                                     f'<div class="err">{esc(error)}</div>'), 400)
            return redirect(f"{b}/app/settings.html?saved=1", 302)
        message = "Settings saved." if request.arg("saved") else ""
        form = self.settings_form_html(f"{b}/app/settings.html", message=message)
        return html_response(self.layout_abs(request, "Device Settings", form),
                             headers=self.cookie_headers(request))

    async def firmware(self, request: Request) -> Response:
        form = self.firmware_form_html(f"{self.base(request)}/app/firmware_upload.cgi")
        return html_response(self.layout_abs(request, "Firmware", form))

    async def upload(self, request: Request) -> Response:
        return await self.firmware_upload(request)

    async def logs(self, request: Request) -> Response:
        body = self.logs_html(f"{self.base(request)}/app/log_download.cgi")
        return html_response(self.layout_abs(request, "Logs", body))

    async def download(self, request: Request) -> Response:
        return self.log_download(request, "kyocera.log")
