"""Every profile's technician pages: status, a persisted setting, firmware upload, logs."""

from __future__ import annotations

import base64
import hashlib
import os
import re

import httpx
import pytest

from ewsgate.devicesim.profiles import PROFILES
from ewsgate.devicesim.profiles.brother import PASSWORD as BROTHER_PASSWORD
from ewsgate.devicesim.profiles.cookiejs import PASSWORD as COOKIEJS_PASSWORD
from ewsgate.devicesim.profiles.konica import ADMIN_PASSWORD
from ewsgate.devicesim.tls import legacy_client_context

pytestmark = pytest.mark.integration

_RICOH = "/web/entry/en/websys/config"
PAGES = {
    # status, settings, firmware form, logs
    "hp": ("/hp/device/DeviceStatus/Index", "/hp/device/DeviceInformation/Index",
           "/hp/device/FirmwareUpgrade/Index", "/hp/device/EventLog/Index"),
    "brother": ("/general/status.html", "/general/contact.html", "/admin/firmware.html",
                "/general/log.html"),
    "ricoh": ("/web/guest/en/websys/webArch/topPage.cgi", f"{_RICOH}/deviceInfo.cgi",
              f"{_RICOH}/firmware.cgi", f"{_RICOH}/jobLog.cgi"),
    "sharp": ("/main.html", "/admin/settings.html", "/admin/firmware.html", "/admin/logs.html"),
    "absolute": ("/app/index.html", "/app/settings.html", "/app/firmware.html",
                 "/app/logs.html"),
    "panel": ("/status.html", "/settings.html", "/firmware.html", "/logs.html"),
    "konica": ("/wcd/index.html", "/wcd/admin/system.html", "/wcd/admin/firmware.html",
               "/wcd/admin/log.html"),
    "legacyhttp": ("/status.html", "/settings.html", "/firmware.html", "/logs.html"),
    "hostile": ("/status.html", "/settings.html", "/firmware.html", "/logs.html"),
    "cookiejs": ("/app/status.html", "/app/settings.html", "/app/firmware.html",
                 "/app/logs.html"),
}


async def log_in(profile: str, client: httpx.AsyncClient) -> None:
    """Log in the way each device wants it."""
    if profile == "brother":
        page = (await client.get("/general/status.html")).text
        field = re.search(r'id="LogBox" name="([^"]+)"', page).group(1)
        await client.post("/general/status.html", data={field: BROTHER_PASSWORD,
                                                        "loginurl": "/general/status.html"})
    elif profile == "ricoh":
        client.cookies.set("cookieOnOffChecker", "on")
        form = (await client.get("/web/guest/en/websys/webArch/authForm.cgi")).text
        token = re.search(r'name="wimToken" value="([^"]+)"', form).group(1)
        await client.post("/web/guest/en/websys/webArch/login.cgi", data={
            "wimToken": token, "userid": base64.b64encode(b"admin").decode(), "password": ""})
    elif profile == "sharp":
        client.auth = httpx.BasicAuth("admin", "admin")
    elif profile == "konica":
        await client.post("/wcd/login.cgi", data={"password": ADMIN_PASSWORD})
    elif profile == "cookiejs":
        # what the login page's script writes before it posts
        client.cookies.set("cookie_check", "1")
        client.cookies.set("ews_user", "admin")
        await client.post("/login.cgi", data={"user": "admin", "password": COOKIEJS_PASSWORD})


def hidden_inputs(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def test_every_profile_is_covered() -> None:
    assert set(PAGES) == set(PROFILES)


@pytest.mark.parametrize("profile", sorted(PAGES))
async def test_status_settings_firmware_and_logs(device_factory, profile: str) -> None:
    https = profile in ("hp", "brother")
    device = await device_factory(profile, http=not https, https=https,
                                  serial=f"SIM{profile.upper()}1", mac="02:00:00:00:00:01")
    status_path, settings_path, firmware_path, logs_path = PAGES[profile]
    base = device.url("https" if https else "http", "")
    verify = legacy_client_context() if profile == "brother" else False
    async with httpx.AsyncClient(base_url=base, verify=verify, timeout=30) as client:
        await log_in(profile, client)

        status = await client.get(status_path)
        assert status.status_code == 200
        assert f"SIM{profile.upper()}1" in status.text and "02:00:00:00:00:01" in status.text

        form = (await client.get(settings_path)).text
        assert 'id="settings-form"' in form
        action = re.search(r'<form method="post" action="([^"]+)" id="settings-form"',
                           form).group(1)
        saved = await client.post(action, data={**hidden_inputs(form),
                                                "location": f"Room of {profile}"})
        assert saved.status_code in (200, 301, 302, 303)
        again = await client.get(settings_path)
        assert f'value="Room of {profile}"' in again.text

        firmware = (await client.get(firmware_path)).text
        upload_path = re.search(r'<form method="post" action="([^"]+)" '
                                r'enctype="multipart/form-data" id="firmware-form"',
                                firmware).group(1)
        data = os.urandom(1_000_003)
        receipt = await client.post(upload_path + "?format=json", data=hidden_inputs(firmware),
                                    files={"firmware": ("fw.bin", data)})
        assert receipt.status_code == 200
        assert receipt.json()["sha256"] == hashlib.sha256(data).hexdigest()
        assert receipt.json()["size"] == len(data)

        logs = await client.get(logs_path)
        assert "Setting changed: location" in logs.text
        assert f"sha256={hashlib.sha256(data).hexdigest()}" in logs.text
        download = re.search(r'id="download-log" href="([^"]+)"', logs.text).group(1)
        log_file = await client.get(download + "?bytes=4096")
        assert log_file.status_code == 200 and len(log_file.content) == 4096
        assert f"serial=SIM{profile.upper()}1".encode() in log_file.content
