"""WebSocket and cookie attacks from the device's side, as routes a hostile profile includes.

Not a profile of its own: :class:`HostileWebSockets` registers its routes (all under
``/hostile/``) on a router, and :func:`websocket_attacks` is the ``hostile`` profile's attack
group (named in :data:`~ewsgate.devicesim.profiles.hostile.ROUTE_GROUPS`) that does so on the
device and lists them as :class:`~ewsgate.devicesim.profiles.attacks.Attack` entries. Tests
may also mount the routes on a bare router::

    HostileWebSockets().register(router)

Routes (what a relay must do with each is in docs/relay.md's hardening table):

``/hostile/ws/set-cookie``    a valid 101 that also sets the relay's own cookie name, a cookie
                              for the relay's parent domain and a CSP of its own; then says
                              ``hello`` and echoes
``/hostile/ws/no-accept``     a 101 without ``Sec-WebSocket-Accept``, then speaks raw HTTP
                              (as a device answering ``Sec-WebSocket-Version: 99`` might)
``/hostile/ws/wrong-accept``  a 101 whose accept answers another key
``/hostile/ws/extension``     a 101 selecting ``permessage-deflate`` nobody offered
``/hostile/ws/raw``           a valid 101, then a text frame, then it records every byte that
                              arrives (``/hostile/ws/received.json``): only frames may
``/hostile/cookies.html``     plants cookies: by header (``Domain=<parent>``, the relay's cookie
                              name) and by script, around any ``document.cookie`` wrapper (an
                              ``about:blank`` frame's own setter) for the parent domain, and
                              through it for the relay's cookie name; ``#planted`` says done
``/hostile/cookies.json``     the cookies this request carried (what the device received)
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ewsgate.devicesim.profiles.attacks import Attack, HostileDevice
from ewsgate.devicesim.web import (
    Request,
    Response,
    Router,
    WebSocket,
    WebSocketResponse,
    html_response,
    json_response,
)

__all__ = ["HOSTILE_WS_ROUTES", "HostileWebSockets", "websocket_attacks"]

HOSTILE_WS_ROUTES = (
    "/hostile/ws/set-cookie", "/hostile/ws/no-accept", "/hostile/ws/wrong-accept",
    "/hostile/ws/extension", "/hostile/ws/raw", "/hostile/ws/received.json",
    "/hostile/cookies.html", "/hostile/cookies.json",
)

_PLANT_JS = """
var parent = location.hostname.split(".").slice(1).join(".");
var frame = document.createElement("iframe");
document.body.appendChild(frame);
// the frame's own Document.prototype: whatever wraps this page's document.cookie, not that
frame.contentDocument.cookie = "js_wide=1; domain=" + parent + "; path=/";
frame.contentDocument.cookie = "js_host=1; path=/";
document.cookie = "js_wrapped_wide=1; domain=" + parent + "; path=/";
document.cookie = "__Host-ewsgate_rt=junk; path=/; secure";
document.getElementById("planted").textContent = "done";
"""


class HostileWebSockets:
    """The routes; ``received`` holds what ``/hostile/ws/raw`` got after its 101."""

    def __init__(self) -> None:
        self.received = bytearray()

    def register(self, router: Router) -> None:
        router.add("/hostile/ws/set-cookie", self.set_cookie)
        router.add("/hostile/ws/no-accept", self.no_accept)
        router.add("/hostile/ws/wrong-accept", self.wrong_accept)
        router.add("/hostile/ws/extension", self.extension)
        router.add("/hostile/ws/raw", self.raw)
        router.add("/hostile/ws/received.json", self.received_json)
        router.add("/hostile/cookies.html", self.plant_cookies)
        router.add("/hostile/cookies.json", self.cookies)

    @staticmethod
    def _parent(request: Request) -> str:
        host = (request.header("host") or "").rsplit(":", 1)[0]
        return host.split(".", 1)[1] if "." in host else host

    async def set_cookie(self, request: Request) -> WebSocketResponse:
        return WebSocketResponse(self._echo, headers=[
            ("Set-Cookie", "__Host-ewsgate_rt=stolen; Path=/; Secure"),
            ("Set-Cookie", f"ws_wide=1; Domain={self._parent(request)}; Path=/"),
            ("Content-Security-Policy", "default-src *")])

    async def no_accept(self, request: Request) -> WebSocketResponse:
        return WebSocketResponse(self._echo, accept="missing", raw=self._speak_http)

    async def wrong_accept(self, request: Request) -> WebSocketResponse:
        return WebSocketResponse(self._echo, accept="wrong", raw=self._speak_http)

    async def extension(self, request: Request) -> WebSocketResponse:
        return WebSocketResponse(self._echo, headers=[
            ("Sec-WebSocket-Extensions", "permessage-deflate")])

    async def raw(self, request: Request) -> WebSocketResponse:
        return WebSocketResponse(self._echo, raw=self._record)

    async def received_json(self, request: Request) -> Response:
        return json_response({"received": self.received.decode("latin-1")})

    async def plant_cookies(self, request: Request) -> Response:
        body = ('<!DOCTYPE html><html><head><title>cookies</title></head><body>'
                '<p id="planted">planting</p>'
                f"<script>{_PLANT_JS}</script></body></html>")
        return html_response(body, headers=[
            ("Set-Cookie", f"hdr_wide=1; Domain={self._parent(request)}; Path=/"),
            ("Set-Cookie", "__Host-ewsgate_rt=stolen; Path=/; Secure; HttpOnly"),
            ("Set-Cookie", "hdr_host=1; Path=/")])

    async def cookies(self, request: Request) -> Response:
        return json_response(request.cookies)

    @staticmethod
    async def _echo(ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionError):
            await ws.send_text("hello")
            while (message := await ws.receive()) is not None:
                text = message if isinstance(message, str) else message.decode("latin-1")
                await ws.send_text(text)

    @staticmethod
    async def _speak_http(leftover: bytes, reader: Any, writer: Any) -> None:
        """After a broken 101: an HTTP response and a frame, as if nothing had switched."""
        writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: after_switch=1\r\nContent-Length: 2"
                     b"\r\n\r\nok\x81\x05hello")
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
            await asyncio.wait_for(reader.read(65536), 5)

    async def _record(self, leftover: bytes, reader: Any, writer: Any) -> None:
        self.received += leftover
        writer.write(b"\x81\x05hello")
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
            while data := await reader.read(65536):
                self.received += data


def websocket_attacks(device: HostileDevice) -> list[Attack]:
    """The ``hostile`` profile's WebSocket and cookie attack group: the routes above on the
    device's router, each listed with what the relay must do."""
    HostileWebSockets().register(device.router)
    refused = ("the relay answers 502 and splices nothing: the WebSocket never opens and "
               "the HTTP the device speaks after its 101 reaches no browser")
    return [
        Attack("ws-set-cookie", "/hostile/ws/set-cookie", "websocket",
               "opens, but the 101's Set-Cookie (the relay's cookie name, the parent domain) "
               "and CSP never reach the browser"),
        Attack("ws-no-accept", "/hostile/ws/no-accept", "websocket", refused),
        Attack("ws-wrong-accept", "/hostile/ws/wrong-accept", "websocket", refused),
        Attack("ws-extension", "/hostile/ws/extension", "websocket",
               "the relay answers 502: an extension nobody offered"),
        Attack("ws-raw", "/hostile/ws/raw", "websocket",
               "opens; only WebSocket frames reach the device, never plain HTTP "
               "(/hostile/ws/received.json shows what arrived)"),
        Attack("cookies", "/hostile/cookies.html", "page",
               "cookies planted by header and by document.cookie (the parent domain, the "
               "relay's cookie name) reach no other session's device and shadow no relay "
               "cookie; /hostile/cookies.json shows what a request carried"),
    ]
