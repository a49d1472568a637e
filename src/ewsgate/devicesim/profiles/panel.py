"""``panel``: a remote front panel over WebSocket (Xerox Remote Control Panel-like).

Quirks reproduced (sources in docs/devicesim.md):

* ``/panel/ws`` is a WebSocket that pushes the live front-panel view (four display lines, the
  LEDs, a sequence number) as a JSON text frame every 200 ms (5 frames a second, data LED
  blinking), and accepts key presses (``{"key": "down"}`` or just ``down``) that change the
  display at once (menu navigation, see :mod:`ewsgate.devicesim.panel_model`).
* ``/panel/`` renders it with a little vanilla JS that builds the WebSocket URL from
  ``location.host`` (works through any origin that forwards WebSockets); ``/panel/absolute.html``
  builds it from the device's own address (``ws://<device-ip>:<port>/panel/ws``), which only
  works if a relay rewrites it.
* ``/`` redirects to ``/panel/``; status, settings, firmware and logs pages as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from ewsgate.devicesim.panel_model import KEYS, PanelModel, UnknownKey
from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin
from ewsgate.devicesim.state import DeviceContext
from ewsgate.devicesim.web import (
    Request,
    Response,
    WebSocket,
    WebSocketResponse,
    esc,
    redirect,
)

__all__ = ["FRAME_INTERVAL", "PanelProfile"]

FRAME_INTERVAL = 0.2

_PANEL_CSS = (
    "#lcd{background:#9fb36b;color:#1c2410;font:18px/1.3 'Courier New',monospace;"
    "padding:10px 14px;width:260px;border:6px solid #333;border-radius:6px;white-space:pre;"
    "margin:0}"
    ".leds span{display:inline-block;width:12px;height:12px;border-radius:6px;"
    "background:#555;margin:6px 4px 0 12px;vertical-align:middle}"
    ".leds span.on.ready{background:#2c2}.leds span.on.data{background:#3af}"
    ".leds span.on.attention{background:#f80}"
    ".keys button{margin:4px;min-width:64px}"
)

_PANEL_JS = """
(function(){
  var url = %s;
  var state = document.getElementById('conn');
  var ws = new WebSocket(url);
  window.panelSocket = ws;
  ws.onopen = function(){ state.textContent = 'connected'; };
  ws.onclose = function(){ state.textContent = 'disconnected'; };
  ws.onerror = function(){ state.textContent = 'error'; };
  ws.onmessage = function(m){
    var v = JSON.parse(m.data);
    if (v.type !== 'panel') { return; }
    document.getElementById('lcd').textContent = v.lines.join('\\n');
    document.getElementById('seq').textContent = v.seq;
    ['ready','data','attention'].forEach(function(n){
      document.getElementById('led-' + n).className = n + (v.leds[n] ? ' on' : '');
    });
  };
  Array.prototype.forEach.call(document.querySelectorAll('.keys button'), function(b){
    b.onclick = function(){ ws.send(JSON.stringify({key: b.getAttribute('data-key')})); };
  });
})();
"""


class PanelProfile(Profile):
    info = ProfileInfo(
        name="panel", make="Xerox", model="VersaLink C405", serial="3390123456",
        mac="9c:93:4e:6a:7b:8c", snmp_vendor="xerox", server="Xerox_MicroServer/Xerox11",
        hostname_prefix="XRX", firmware="68.25.71",
        summary="Remote panel: WebSocket /panel/ws streams the display and LEDs 5x a second "
                "and takes key presses; page builds the URL from location.host (and a variant "
                "from the absolute device address)")
    skin = Skin(logo="xerox", product_line="Embedded Web Server", header_bg="#d52b1e",
                accent="#0d6aad", font="'Helvetica Neue', Arial, sans-serif")

    def __init__(self, ctx: DeviceContext) -> None:
        self.model = PanelModel(self.facts)
        self.tick = 0
        super().__init__(ctx)

    def facts(self) -> dict[str, str]:
        return {"ip": self.ctx.config.advertised_host, "mac": self.ctx.config.mac.upper(),
                "host": self.ctx.config.hostname,
                "name": self.ctx.state.settings.get("device_name", ""),
                "clock": time.strftime("%H:%M:%S", time.gmtime(self.ctx.clock.time()))}

    def setup(self) -> None:
        r = self.router
        r.add("/", self.root)
        r.add("/panel/", self.panel_page)
        r.add("/panel/absolute.html", self.panel_absolute)
        r.add("/panel/ws", self.panel_ws)
        r.add("/status.html", self.status)
        r.add("/settings.html", self.settings, ("GET", "POST"))
        r.add("/firmware.html", self.firmware)
        r.add("/firmware_upload.html", self.upload, ("POST",))
        r.add("/logs.html", self.logs)
        r.add("/log_download.html", self.download)

    def nav(self) -> list[tuple[str, str]]:
        return [("Remote Control Panel", "/panel/"), ("Panel (absolute URL)",
                "/panel/absolute.html"), ("Status", "/status.html"),
                ("Settings", "/settings.html"), ("Firmware", "/firmware.html"),
                ("Logs", "/logs.html")]

    async def root(self, request: Request) -> Response:
        return redirect("/panel/", 302)

    def panel_html(self, url_js: str) -> Response:
        keys = "".join(f'<button type="button" data-key="{k}" id="key-{k}">{k.title()}</button>'
                       for k in KEYS)
        body = (
            f"<p>Connection: <b id=\"conn\">connecting</b> &middot; frame <span id=\"seq\">-"
            "</span></p>"
            f'<pre id="lcd">{esc(chr(10).join(self.model.lines()))}</pre>'
            '<div class="leds"><span id="led-ready" class="ready"></span>Ready'
            '<span id="led-data" class="data"></span>Data'
            '<span id="led-attention" class="attention"></span>Attention</div>'
            f'<div class="keys">{keys}</div>'
            f"<script>{_PANEL_JS % url_js}</script>")
        return self.page("Remote Control Panel", body, head=f"<style>{_PANEL_CSS}</style>")

    async def panel_page(self, request: Request) -> Response:
        return self.panel_html(
            "(location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/panel/ws'")

    async def panel_absolute(self, request: Request) -> Response:
        return self.panel_html(json.dumps(self.ctx.ws_url(request.scheme) + "/panel/ws"))

    async def panel_ws(self, request: Request) -> WebSocketResponse:
        return WebSocketResponse(self.panel_session)

    async def panel_session(self, ws: WebSocket) -> None:
        changed = asyncio.Event()
        self.ctx.log("Remote control panel connected")

        async def keys() -> None:
            while (message := await ws.receive()) is not None:
                text = message.decode("utf-8", "replace") if isinstance(message, bytes) \
                    else message
                key = text
                with contextlib.suppress(ValueError, AttributeError):
                    key = str(json.loads(text).get("key", ""))
                try:
                    self.model.press(key)
                except UnknownKey as exc:
                    await ws.send_text(json.dumps({"type": "error", "code": exc.code,
                                                   "message": str(exc)}))
                changed.set()

        reader = asyncio.create_task(keys())
        try:
            while not reader.done():
                self.tick += 1
                changed.clear()
                await ws.send_text(json.dumps(self.model.view(self.tick)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), FRAME_INTERVAL)
        except ConnectionError:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self.ctx.log("Remote control panel disconnected")

    async def status(self, request: Request) -> Response:
        return self.page("Status", self.status_html())

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            error = self.apply_settings(await request.form())
            if error:
                return self.page("Settings", f'<div class="err">{esc(error)}</div>', 400)
            return redirect("/settings.html?saved=1", 303)
        message = "Saved." if request.arg("saved") else ""
        return self.page("Settings", self.settings_form_html("/settings.html", message=message))

    async def firmware(self, request: Request) -> Response:
        return self.page("Firmware", self.firmware_form_html("/firmware_upload.html"))

    async def upload(self, request: Request) -> Response:
        return await self.firmware_upload(request)

    async def logs(self, request: Request) -> Response:
        return self.page("Logs", self.logs_html("/log_download.html"))

    async def download(self, request: Request) -> Response:
        return self.log_download(request, "xerox.log")
