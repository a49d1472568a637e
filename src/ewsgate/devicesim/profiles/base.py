"""What every simulated printer's web side shares: identity, look, and the four technician pages.

A profile subclasses :class:`Profile`, declares its :class:`ProfileInfo` (make, model, default
serial and MAC, the SNMP vendor, TLS flavour) and a :class:`Skin` (colours and logo, so the
pages look like the vendor's), and registers its routes on ``self.router`` in :meth:`setup`.
The building blocks here render the pages a technician actually uses:

* status (:meth:`Profile.status_html`): identity, toner, tray and counters;
* settings (:meth:`Profile.settings_form_html` / :meth:`Profile.apply_settings`): a form whose
  values persist in memory for the life of the process;
* firmware (:meth:`Profile.firmware_form_html` / :meth:`Profile.firmware_upload`): a streamed
  multipart upload answered with SHA-256 and byte count (HTML, or JSON with ``?format=json``);
* logs (:meth:`Profile.logs_html`, :func:`large_log`): the event log and a big log download
  generated on the fly at constant memory.

The quirks live in each profile's own module; this one only keeps them from repeating the rest.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

from ewsgate.devicesim.state import DeviceContext
from ewsgate.devicesim.upload import UploadError, receipt_html, receipt_response, receive_firmware
from ewsgate.devicesim.web import (
    Request,
    Response,
    Router,
    WebSocketResponse,
    esc,
    html_response,
)

__all__ = ["SETTINGS", "Profile", "ProfileInfo", "Skin", "large_log"]


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    """Who the simulated device says it is."""

    name: str
    make: str
    model: str
    serial: str
    mac: str
    #: key of the SNMP vendor table (``ewsgate.devicesim.mib.VENDORS``)
    snmp_vendor: str
    #: what the device's ``Server`` header says
    server: str
    #: ``modern`` (TLS 1.2+) or ``legacy`` (TLS 1.0/1.1 only, old ciphers)
    tls: str = "modern"
    #: host-name prefix; the device's host name is this plus the MAC's last three bytes
    hostname_prefix: str = "PRN"
    firmware: str = "1.0.0"
    summary: str = ""


@dataclass(frozen=True, slots=True)
class Skin:
    """The vendor look: colours and the logo text in the header bar."""

    logo: str
    product_line: str
    header_bg: str
    header_fg: str = "#ffffff"
    accent: str = "#0067b1"
    font: str = "Arial, Helvetica, sans-serif"


#: the settings form every profile offers: (key, label)
SETTINGS = (
    ("device_name", "Device Name"),
    ("location", "Device Location"),
    ("contact", "Contact Person"),
    ("asset_number", "Asset Number"),
)

_LOG_LINE = 100  # bytes, newline included


async def large_log(size: int, *, serial: str, block_lines: int = 655) -> AsyncIterator[bytes]:
    """``size`` bytes of plausible log lines, generated block by block (constant memory)."""
    marker = b"##########"
    lines = []
    for i in range(block_lines):
        text = (f"{marker.decode()}.{i:03d} INFO  jobmgr  serial={serial} job completed "
                f"pages=1 duplex=off tray=2 user=guest")
        lines.append(text[: _LOG_LINE - 1].ljust(_LOG_LINE - 1).encode() + b"\n")
    template = b"".join(lines)
    sent, block = 0, 0
    while sent < size:
        chunk = template.replace(marker, b"%010d" % block)[: size - sent]
        sent += len(chunk)
        block += 1
        yield chunk


class Profile:
    """Base of every profile: routing, Server header, layout and the shared technician pages."""

    info: ClassVar[ProfileInfo]
    skin: ClassVar[Skin]

    def __init__(self, ctx: DeviceContext) -> None:
        self.ctx = ctx
        self.router = Router(self.not_found)
        defaults = {"device_name": ctx.config.hostname, "location": "2nd floor, copy room",
                    "contact": "Facilities desk", "asset_number": ""}
        for key, value in defaults.items():
            ctx.state.settings.setdefault(key, value)
        ctx.log(f"{self.info.make} {self.info.model} started, firmware {self.info.firmware}")
        self.setup()

    def setup(self) -> None:
        """Register routes; every profile overrides this."""
        raise NotImplementedError

    async def handle(self, request: Request) -> Response | WebSocketResponse:
        response = await self.router.dispatch(request)
        if isinstance(response, Response) and not any(
                name.lower() == "server" for name, _ in response.headers):
            response.headers.append(("Server", self.info.server))
        return response

    def not_found(self, request: Request) -> Response:
        body = f"<h2>404 Not Found</h2><p>The page {esc(request.path)} does not exist.</p>"
        return html_response(self.layout("Not Found", body), 404)

    # ---- look -------------------------------------------------------------------------------

    def css(self) -> str:
        s = self.skin
        return (
            f"body{{margin:0;font-family:{s.font};font-size:13px;color:#222;background:#f4f4f4}}"
            f"header{{background:{s.header_bg};color:{s.header_fg};padding:8px 16px;"
            "display:flex;align-items:baseline;gap:16px}"
            "header .logo{font-weight:bold;font-size:20px;letter-spacing:1px}"
            "header .model{font-size:13px;opacity:.9}"
            "nav{float:left;width:180px;padding:12px 0;background:#fff;min-height:420px;"
            "border-right:1px solid #ddd}"
            f"nav a{{display:block;padding:6px 16px;color:{s.accent};text-decoration:none}}"
            "nav a:hover{background:#eef}"
            "main{margin-left:181px;padding:12px 24px}"
            f"h1{{font-size:18px;color:{s.accent};border-bottom:2px solid {s.accent}}}"
            "table.grid{border-collapse:collapse;background:#fff;min-width:420px}"
            "table.grid th,table.grid td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
            "table.grid th{background:#eee;font-weight:normal;width:180px}"
            f"button,input[type=submit]{{background:{s.accent};color:#fff;border:0;"
            "padding:5px 14px;border-radius:2px;cursor:pointer}"
            ".msg{padding:6px 10px;background:#e6f4e6;border:1px solid #9c9;margin:8px 0}"
            ".err{padding:6px 10px;background:#fbe9e9;border:1px solid #d99;margin:8px 0}"
            ".bar{display:inline-block;height:10px;background:#999}"
        )

    def nav(self) -> list[tuple[str, str]]:
        """(label, href) of the left menu; profiles override."""
        return []

    def layout(self, title: str, body: str, *, head: str = "") -> str:
        links = "".join(f'<a href="{esc(href)}">{esc(label)}</a>' for label, href in self.nav())
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)} - {esc(self.info.model)}</title>"
            f"<style>{self.css()}</style>{head}</head><body>"
            f'<header><span class="logo">{esc(self.skin.logo)}</span>'
            f'<span class="model">{esc(self.skin.product_line)} {esc(self.info.model)}</span>'
            f'<span class="model" id="hdr-name">{esc(self.ctx.state.settings["device_name"])}'
            "</span></header>"
            f"<nav>{links}</nav><main><h1>{esc(title)}</h1>{body}</main></body></html>"
        )

    def page(self, title: str, body: str, status: int = 200,
             headers: list[tuple[str, str]] | None = None, *, head: str = "") -> Response:
        """A page in the vendor layout."""
        return html_response(self.layout(title, body, head=head), status, headers)

    # ---- status -----------------------------------------------------------------------------

    def identity(self) -> list[tuple[str, str]]:
        cfg = self.ctx.config
        return [
            ("Product Name", f"{self.info.make} {self.info.model}"),
            ("Serial Number", cfg.serial),
            ("MAC Address", cfg.mac),
            ("Host Name", cfg.hostname),
            ("IP Address", cfg.advertised_host),
            ("Firmware Version", self.info.firmware),
        ]

    def status_html(self) -> str:
        s = self.ctx.state
        up = int(self.ctx.uptime())
        rows = [*self.identity(),
                ("Device Name", s.settings["device_name"]),
                ("Location", s.settings["location"]),
                ("Status", "Ready"),
                ("Total Page Count", str(s.page_count)),
                ("Up Time", f"{up // 3600}h {up % 3600 // 60}m {up % 60}s")]
        ident = "".join(f'<tr><th>{esc(k)}</th><td id="st-{esc(k.lower().replace(" ", "-"))}">'
                        f"{esc(v)}</td></tr>" for k, v in rows)
        toner = "".join(
            f'<tr><th>{name}</th><td><span class="bar" style="width:{pct * 2}px;'
            f'background:{colour}"></span> {pct}%</td></tr>'
            for name, colour, pct in (("Black", "#222", 64), ("Cyan", "#0aa", 41),
                                      ("Magenta", "#c0c", 77), ("Yellow", "#cc0", 18)))
        trays = ("<tr><th>Tray 1 (MP)</th><td>Empty</td></tr>"
                 "<tr><th>Tray 2</th><td>A4 Plain - 80%</td></tr>"
                 "<tr><th>Tray 3</th><td>Letter Plain - OK</td></tr>")
        return (f'<table class="grid" id="status">{ident}</table><h2>Supplies</h2>'
                f'<table class="grid">{toner}</table><h2>Paper</h2>'
                f'<table class="grid">{trays}</table>')

    # ---- settings ---------------------------------------------------------------------------

    def settings_form_html(self, action: str, *, hidden: dict[str, str] | None = None,
                           message: str = "", field_names: dict[str, str] | None = None) -> str:
        """The settings form; ``field_names`` renames inputs (some devices use odd names)."""
        s = self.ctx.state.settings
        names = field_names or {}
        rows = "".join(
            f'<tr><th><label for="{key}">{esc(label)}</label></th><td>'
            f'<input id="{key}" name="{esc(names.get(key, key))}" value="{esc(s.get(key, ""))}"'
            ' size="40" maxlength="64"></td></tr>' for key, label in SETTINGS)
        hidden_inputs = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
                                for k, v in (hidden or {}).items())
        note = f'<div class="msg" id="saved">{esc(message)}</div>' if message else ""
        return (f'{note}<form method="post" action="{esc(action)}" id="settings-form">'
                f'{hidden_inputs}<table class="grid">{rows}</table><p>'
                '<input type="submit" value="Apply" id="apply"></p></form>')

    def apply_settings(self, form: dict[str, str],
                       field_names: dict[str, str] | None = None) -> str:
        """Store the submitted settings; return an error text ('' when all were accepted)."""
        names = field_names or {}
        changes: dict[str, str] = {}
        for key, label in SETTINGS:
            value = form.get(names.get(key, key))
            if value is None:
                continue
            value = value.strip()
            if len(value) > 64 or not value.isprintable():
                return f"{label} must be at most 64 printable characters."
            changes[key] = value
        for key, value in changes.items():
            if self.ctx.state.settings.get(key) != value:
                self.ctx.log(f"Setting changed: {key} = {value!r}")
            self.ctx.state.settings[key] = value
        return ""

    # ---- firmware ---------------------------------------------------------------------------

    def firmware_form_html(self, action: str, *, hidden: dict[str, str] | None = None) -> str:
        hidden_inputs = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
                                for k, v in (hidden or {}).items())
        return (f"<p>Current firmware: <b>{esc(self.info.firmware)}</b></p>"
                f'<form method="post" action="{esc(action)}" enctype="multipart/form-data" '
                f'id="firmware-form">{hidden_inputs}'
                '<p><input type="file" name="firmware" id="firmware-file"></p>'
                '<p><input type="submit" value="Upload" id="upload"></p></form>'
                "<p>Select the firmware image (.bin, .bdl, .djf) and choose Upload.</p>")

    async def firmware_upload(self, request: Request, *, title: str = "Firmware Update",
                              require: tuple[str, str] | None = None) -> Response:
        """Receive the image; ``require`` = (field, value) a form field must carry (CSRF)."""
        started = time.monotonic()
        try:
            receipt = await receive_firmware(request)
        except UploadError as exc:
            body = f'<div class="err">{esc(exc)}</div>'
            return html_response(self.layout(title, body), 400)
        if require is not None and receipt.fields.get(require[0]) != require[1]:
            self.ctx.log(f"Firmware upload refused: {require[0]} missing or wrong", "warning")
            body = (f'<div class="err">The {esc(require[0])} is missing or wrong; reload the '
                    "page and upload again.</div>")
            return html_response(self.layout(title, body), 403)
        seconds = time.monotonic() - started
        self.ctx.log(f"Firmware image received: {receipt.filename} {receipt.size} bytes "
                     f"sha256={receipt.sha256} in {seconds:.1f}s")
        return receipt_response(request, receipt, page=self.layout(title, receipt_html(receipt)))

    # ---- logs -------------------------------------------------------------------------------

    def logs_html(self, download_href: str) -> str:
        rows = "".join(
            f"<tr><td>{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e.at))}</td>"
            f"<td>{esc(e.severity)}</td><td>{esc(e.text)}</td></tr>"
            for e in list(self.ctx.state.events)[:200])
        size_mb = self.ctx.config.large_log_bytes / (1024 * 1024)
        return (f'<p><a id="download-log" href="{esc(download_href)}">Download the full log '
                f"({size_mb:.0f} MB)</a></p>"
                '<table class="grid" id="event-log"><tr><th>Time (UTC)</th><th>Level</th>'
                f"<th>Event</th></tr>{rows}</table>")

    def log_download(self, request: Request, filename: str = "device.log") -> Response:
        size = self.ctx.config.large_log_bytes
        if request.arg("bytes").isdigit():
            size = min(int(request.arg("bytes")), size)
        return Response(200, [("Content-Type", "text/plain"), ("Content-Length", str(size)),
                              ("Content-Disposition", f'attachment; filename="{filename}"')],
                        large_log(size, serial=self.ctx.config.serial))
