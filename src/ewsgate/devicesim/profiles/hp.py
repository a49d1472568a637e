"""``hp``: an HTTPS-enforcing EWS (HP LaserJet / FutureSmart, Epson alike).

Quirks reproduced (sources in docs/devicesim.md):

* With HTTPS enabled (an ``--https`` listener), every plain-HTTP request answers with an
  **absolute** ``Location: https://<device-ip>[:port]/…``: ``301`` for GET/HEAD, ``302`` for
  other methods (older firmware; a browser then retries a POST as a GET). A proxy that passes the
  ``Location`` through unchanged sends the browser straight to the device's private address.
* The HTTPS side presents a self-signed certificate made at first boot.
* The UI lives under ``/hp/device/...`` (``DeviceStatus/Index``, ``DeviceInformation/Index``,
  ``FirmwareUpgrade/Index``, ``EventLog/Index``); ``/`` redirects there (relative path).
* LEDM XML under ``/DevMgmt/``: ``ProductConfigDyn.xml`` carries the serial number, which fleet
  tools scrape when SNMP is off.
"""

from __future__ import annotations

from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin
from ewsgate.devicesim.web import Request, Response, esc, redirect

__all__ = ["HpProfile"]

_UI = "/hp/device"


class HpProfile(Profile):
    info = ProfileInfo(
        name="hp", make="HP", model="Color LaserJet MFP M480f", serial="CNBRM5K0QZ",
        mac="a0:d3:c1:4a:2b:3c", snmp_vendor="hp",
        server="HP HTTP Server; HP Color LaserJet MFP M480f - 3QA55A",
        hostname_prefix="NPI", firmware="2506081_000590",
        summary="HTTPS-enforcing: HTTP → 301/302 to an absolute https://<device-ip>/ URL; "
                "self-signed certificate; /hp/device/ UI; LEDM XML with the serial")
    skin = Skin(logo="hp", product_line="HP Color LaserJet MFP", header_bg="#0096d6",
                accent="#0076a8", font="'Segoe UI', Arial, sans-serif")

    def setup(self) -> None:
        r = self.router
        r.add("/", self.root)
        r.add(f"{_UI}/DeviceStatus/Index", self.status)
        r.add(f"{_UI}/DeviceInformation/Index", self.settings, ("GET", "POST"))
        r.add(f"{_UI}/FirmwareUpgrade/Index", self.firmware)
        r.add(f"{_UI}/FirmwareUpgrade/Upload", self.upload, ("POST",))
        r.add(f"{_UI}/EventLog/Index", self.logs)
        r.add(f"{_UI}/EventLog/Download", self.download)
        r.add("/DevMgmt/ProductConfigDyn.xml", self.product_config)

    async def handle(self, request: Request) -> Response:
        if request.scheme == "http" and self.ctx.https_port is not None:
            status = 301 if request.method in ("GET", "HEAD") else 302
            location = self.ctx.base_url("https") + request.target
            return redirect(location, status, [("Server", self.info.server)])
        response = await super().handle(request)
        assert isinstance(response, Response)
        return response

    def nav(self) -> list[tuple[str, str]]:
        return [("Device Status", f"{_UI}/DeviceStatus/Index"),
                ("Device Information", f"{_UI}/DeviceInformation/Index"),
                ("Firmware Upgrade", f"{_UI}/FirmwareUpgrade/Index"),
                ("Event Log", f"{_UI}/EventLog/Index"),
                ("LEDM: ProductConfigDyn", "/DevMgmt/ProductConfigDyn.xml")]

    async def root(self, request: Request) -> Response:
        return redirect(f"{_UI}/DeviceStatus/Index", 302)

    async def status(self, request: Request) -> Response:
        return self.page("Device Status", self.status_html())

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            error = self.apply_settings(await request.form())
            if error:
                return self.page("Device Information", f'<div class="err">{esc(error)}</div>'
                                 + self.settings_form_html(f"{_UI}/DeviceInformation/Index"), 400)
            return redirect(f"{_UI}/DeviceInformation/Index?saved=1", 302)
        message = "The settings were saved." if request.arg("saved") else ""
        return self.page("Device Information",
                         self.settings_form_html(f"{_UI}/DeviceInformation/Index",
                                                 message=message))

    async def firmware(self, request: Request) -> Response:
        return self.page("Firmware Upgrade",
                         self.firmware_form_html(f"{_UI}/FirmwareUpgrade/Upload"))

    async def upload(self, request: Request) -> Response:
        return await self.firmware_upload(request, title="Firmware Upgrade")

    async def logs(self, request: Request) -> Response:
        return self.page("Event Log", self.logs_html(f"{_UI}/EventLog/Download"))

    async def download(self, request: Request) -> Response:
        return self.log_download(request, "EventLog.txt")

    async def product_config(self, request: Request) -> Response:
        cfg = self.ctx.config
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<prdcfgdyn:ProductConfigDyn xmlns:prdcfgdyn="http://www.hp.com/schemas/imaging/'
            'con/ledm/productconfigdyn/2009/03/03" xmlns:dd="http://www.hp.com/schemas/imaging/'
            'con/dictionaries/1.0/">'
            "<prdcfgdyn:ProductInformation>"
            f"<dd:MakeAndModel>{esc(self.info.make)} {esc(self.info.model)}</dd:MakeAndModel>"
            f"<dd:SerialNumber>{esc(cfg.serial)}</dd:SerialNumber>"
            f"<dd:DeviceName>{esc(self.ctx.state.settings['device_name'])}</dd:DeviceName>"
            f"<dd:Version><dd:Revision>{esc(self.info.firmware)}</dd:Revision></dd:Version>"
            "</prdcfgdyn:ProductInformation>"
            f"<prdcfgdyn:MacAddress>{cfg.mac.replace(':', '').upper()}</prdcfgdyn:MacAddress>"
            "</prdcfgdyn:ProductConfigDyn>\n"
        )
        return Response(200, [("Content-Type", "text/xml")], xml.encode())
