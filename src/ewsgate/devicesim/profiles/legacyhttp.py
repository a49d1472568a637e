"""``legacyhttp``: an old plain-HTTP server with framing quirks (older Canon Remote UI alike).

What each path sends (a relay must survive each, or refuse it cleanly; sources in
docs/devicesim.md):

=============================  ===========================================================
``/``, ``/status.html``,       ``HTTP/1.0 200``, no ``Content-Length``, body ends at EOF
``/settings.html``,            (the device closes the connection), even to HTTP/1.1
``/logs.html``                 clients and for redirects after a POST
``/slow.html``                 like ``/`` but the first byte comes after ``slow_seconds``
                               (``?seconds=N`` overrides, at most 60)
``/chunked.html``              ``HTTP/1.1`` + ``Transfer-Encoding: chunked`` in several
                               chunks, whatever the request's version (chunked to HTTP/1.0)
``/both.html``                 ``Content-Length`` (the decoded length) **and**
                               ``Transfer-Encoding: chunked``; RFC 9112 says chunked wins
                               and a proxy must drop the length (or refuse with 502)
``/http10-chunked.html``       ``HTTP/1.0`` + chunked, the final ``0`` chunk never sent, then
                               EOF (a truncated body: the relay must not hang or pass it on
                               as complete)
``/logs/full.log``             the large log, ``Content-Length``, streamed (``?bytes=N``)
``/logs/full-eof.log``         the same, HTTP/1.0 and EOF-terminated (no length known)
``/firmware.html``             the usual streamed multipart upload (``/firmware_upload.cgi``)
=============================  ===========================================================
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin, large_log
from ewsgate.devicesim.web import Framing, Request, Response, esc, html_response

__all__ = ["MAX_SLOW_SECONDS", "LegacyHttpProfile"]

MAX_SLOW_SECONDS = 60.0


class LegacyHttpProfile(Profile):
    info = ProfileInfo(
        name="legacyhttp", make="Canon", model="imageRUNNER 2520", serial="QHK01234",
        mac="00:1e:8f:1a:2b:3c", snmp_vendor="canon", server="CANON HTTP Server Ver2.11",
        hostname_prefix="CNB", firmware="06.05",
        summary="Plain HTTP/1.0 responses closed by EOF, a slow page, chunked to HTTP/1.0, "
                "Content-Length together with chunked, a truncated chunked body, a large "
                "streamed log")
    skin = Skin(logo="Canon", product_line="Remote UI", header_bg="#cc0000", accent="#990000",
                font="'MS PGothic', Arial, sans-serif")

    def setup(self) -> None:
        r = self.router
        r.add("/", self.status)
        r.add("/status.html", self.status)
        r.add("/settings.html", self.settings, ("GET", "POST"))
        r.add("/slow.html", self.slow)
        r.add("/chunked.html", self.chunked)
        r.add("/both.html", self.both)
        r.add("/http10-chunked.html", self.http10_chunked)
        r.add("/logs.html", self.logs)
        r.add("/logs/full.log", self.full_log)
        r.add("/logs/full-eof.log", self.full_log_eof)
        r.add("/firmware.html", self.firmware)
        r.add("/firmware_upload.cgi", self.upload, ("POST",))

    def nav(self) -> list[tuple[str, str]]:
        return [("Status", "/status.html"), ("Settings", "/settings.html"),
                ("Slow page", "/slow.html"), ("Chunked page", "/chunked.html"),
                ("Length + chunked", "/both.html"), ("Truncated chunked", "/http10-chunked.html"),
                ("Logs", "/logs.html"), ("Firmware", "/firmware.html")]

    def eof_page(self, title: str, body: str, status: int = 200,
                 headers: list[tuple[str, str]] | None = None) -> Response:
        return html_response(self.layout(title, body), status, headers, framing=Framing.EOF_HTTP10)

    async def status(self, request: Request) -> Response:
        note = ('<p class="msg" id="framing">Sent as HTTP/1.0 without Content-Length; the body '
                "ends when the device closes the connection.</p>")
        return self.eof_page("Status", note + self.status_html())

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            error = self.apply_settings(await request.form())
            if error:
                return self.eof_page("Settings", f'<div class="err">{esc(error)}</div>', 400)
            return self.eof_page("Settings", '<p>Moved.</p>', 302,
                                 [("Location", "/settings.html?saved=1")])
        message = "The settings were changed." if request.arg("saved") else ""
        return self.eof_page("Settings", self.settings_form_html("/settings.html",
                                                                 message=message))

    async def slow(self, request: Request) -> Response:
        seconds = self.ctx.config.slow_seconds
        try:
            if request.arg("seconds"):
                seconds = min(max(float(request.arg("seconds")), 0.0), MAX_SLOW_SECONDS)
        except ValueError:
            pass
        await asyncio.sleep(seconds)
        return self.eof_page("Slow page", f'<p id="slow">This page took {seconds:g} s to its '
                             "first byte.</p>")

    async def chunked(self, request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            head, _, tail = self.layout("Chunked page", "<p id=\"chunks\">%%BODY%%</p>") \
                .partition("%%BODY%%")
            yield head.encode()
            for i in range(1, 9):
                yield f"<span class=\"chunk\">chunk {i}</span> ".encode()
                await asyncio.sleep(0)
            yield tail.encode()

        return Response(200, [("Content-Type", "text/html; charset=utf-8")], parts(),
                        Framing.CHUNKED_RAW)

    async def both(self, request: Request) -> Response:
        html = self.layout("Length and chunked", '<p id="both">This response carried both '
                           "Content-Length and Transfer-Encoding: chunked.</p>")
        return Response(200, [("Content-Type", "text/html; charset=utf-8")], html.encode(),
                        Framing.LENGTH_AND_CHUNKED)

    async def http10_chunked(self, request: Request) -> Response:
        html = self.layout("Truncated chunked", '<p id="truncated">An HTTP/1.0 chunked body '
                           "whose last chunk never comes.</p>")
        return Response(200, [("Content-Type", "text/html; charset=utf-8")], html.encode(),
                        Framing.HTTP10_CHUNKED_NO_END)

    async def logs(self, request: Request) -> Response:
        body = self.logs_html("/logs/full.log") + (
            '<p><a href="/logs/full-eof.log" id="download-eof">Download without length '
            "(HTTP/1.0, ends at EOF)</a></p>")
        return self.eof_page("Logs", body)

    async def full_log(self, request: Request) -> Response:
        return self.log_download(request, "remoteui.log")

    async def full_log_eof(self, request: Request) -> Response:
        size = self.ctx.config.large_log_bytes
        if request.arg("bytes").isdigit():
            size = min(int(request.arg("bytes")), size)
        return Response(200, [("Content-Type", "text/plain")],
                        large_log(size, serial=self.ctx.config.serial), Framing.EOF_HTTP10)

    async def firmware(self, request: Request) -> Response:
        return self.page("Firmware", self.firmware_form_html("/firmware_upload.cgi"))

    async def upload(self, request: Request) -> Response:
        return await self.firmware_upload(request)
