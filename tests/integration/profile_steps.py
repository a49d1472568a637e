"""What a technician does on each simulated printer, in Chromium, through a session.

:class:`SessionTab` wraps the browser tab that *Open device web page* opened on a session origin
(``https://s-<id>.rt.localhost:<port>/``): it takes numbered screenshots, records every request
and WebSocket the tab makes (so the test can assert none leaves the session origin), and offers
the steps every profile shares (change a setting and see it persist after a reload, upload a
firmware file and read the SHA-256 the device reports).

``STEPS[profile](tab, firmware)`` runs the profile's own path: its login where it has one
(Brother's random field name and CSRF token, Ricoh's frames and base64 login, Sharp's Digest
prompt answered from the context's ``http_credentials``, Konica's single admin session), its
redirects and absolute links, the remote panel, then the shared steps. Each returns the
request paths that must appear in the job's Remote Technician Log.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Frame, Page, expect

from ewsgate.relay.device_cookies import NAMESPACE_PREFIX

__all__ = ["LANDING", "STEPS", "Firmware", "SessionTab", "log_paths"]

#: a selector that shows the profile's first page has rendered (time to first page stops here)
LANDING: dict[str, str] = {
    "hp": "#status",
    "brother": "#LogBox",
    "ricoh": "frame[name=work]",
    "sharp": "frame[name=main]",
    "absolute": "#status",
    "panel": "#lcd",
    "konica": "#password",
    "legacyhttp": "#status",
}



def device_cookies(cookies: list[Any]) -> dict[str, Any]:
    """The browser's cookies set by a device, by the device's own name: the relay keeps them
    as ``__Host-dev.<session tag>.<path>.<name>`` (docs/relay.md, device cookies)."""
    found: dict[str, Any] = {}
    for cookie in cookies:
        if cookie["name"].startswith(NAMESPACE_PREFIX):
            found.setdefault(cookie["name"].split(".", 3)[3], cookie)
    return found

@dataclass(frozen=True)
class Firmware:
    """The firmware image to upload and the digest hashlib computed for it."""

    path: Path
    size: int
    sha256: str

    @classmethod
    def create(cls, path: Path, size: int) -> Firmware:
        digest = hashlib.sha256()
        with path.open("wb") as out:
            block = secrets.token_bytes(1 << 20)
            written = 0
            while written < size:
                piece = block[: min(len(block), size - written)]
                # vary every block so the image is not one repeated megabyte
                piece = written.to_bytes(8, "big") + piece[8:]
                out.write(piece)
                digest.update(piece)
                written += len(piece)
        return cls(path, size, digest.hexdigest())


@dataclass
class SessionTab:
    """The tab on a session origin, with its request record and screenshots."""

    page: Page
    origin: str                       # https://s-<id>.rt.localhost:<port>
    shots: Path
    requests: list[str] = field(default_factory=list)
    step: int = 0
    #: opens the same device through another session in another browser context (konica)
    second_session: Callable[[], Page] | None = None

    def url(self, path: str) -> str:
        return self.origin + path

    def shot(self, name: str, target: Page | None = None) -> Path:
        self.step += 1
        path = self.shots / f"{self.step:02d}-{name}.png"
        (target or self.page).screenshot(path=str(path), full_page=True)
        return path

    def goto(self, path: str) -> None:
        self.page.goto(self.url(path), wait_until="load")

    # shared steps --------------------------------------------------------------------------
    def change_setting(self, where: Page | Frame, reload: Callable[[], Page | Frame]) -> str:
        """Fill ``#location`` with a fresh value, apply, and check it after a reload."""
        value = "Room " + secrets.token_hex(4)
        where.fill("#location", value)
        where.click("#apply")
        self.shot("settings-applied")
        after = reload()
        expect(after.locator("#location")).to_have_value(value, timeout=15_000)
        self.shot("settings-after-reload")
        return value

    def upload(self, where: Page | Frame, firmware: Firmware) -> None:
        """Upload the image through the form; the device's receipt must match hashlib."""
        where.set_input_files("#firmware-file", str(firmware.path))
        where.click("#upload")
        receipt = where.locator("#fw-sha256")
        expect(receipt).to_be_visible(timeout=120_000)
        assert receipt.inner_text().strip() == firmware.sha256
        assert int(re.sub(r"\D", "", where.locator("#fw-size").inner_text())) == firmware.size
        self.shot("firmware-receipt")


def _reload(tab: SessionTab, path: str) -> Callable[[], Page]:
    def again() -> Page:
        tab.goto(path)
        return tab.page
    return again


def _simple(tab: SessionTab, firmware: Firmware, settings: str, upload: str) -> list[str]:
    tab.goto(settings)
    tab.shot("settings")
    tab.change_setting(tab.page, _reload(tab, settings))
    tab.goto(upload)
    tab.upload(tab.page, firmware)
    return [settings, upload]


def hp(tab: SessionTab, firmware: Firmware) -> list[str]:
    # the device answers HTTP with an absolute https://<device-ip> Location; the session
    # reached the HTTPS endpoint and rendered the status page on the session origin
    assert tab.page.url.startswith(tab.origin + "/hp/device/DeviceStatus/Index"), tab.page.url
    expect(tab.page.locator("#st-serial-number")).to_have_text("CNBRM5K0QZ")
    base = "/hp/device"
    return ["/", f"{base}/DeviceStatus/Index",
            *_simple(tab, firmware, f"{base}/DeviceInformation/Index",
                     f"{base}/FirmwareUpgrade/Index")]


def brother(tab: SessionTab, firmware: Firmware) -> list[str]:
    page = tab.page
    field_name = page.get_attribute("#LogBox", "name")
    assert field_name and field_name.startswith("B"), field_name
    assert page.locator("input[name=CSRFToken]").count() == 1
    page.fill("#LogBox", "initpass")
    tab.shot("login-filled")
    page.click("#login")
    page.wait_for_load_state("load")
    expect(page.locator("#LogBox")).to_have_count(0)
    cookies = device_cookies(page.context.cookies(tab.origin))
    assert "AuthCookie" in cookies, cookies
    tab.shot("logged-in")
    settings = "/general/contact.html"
    tab.goto(settings)
    tab.change_setting(page, _reload(tab, settings))    # POST answers 301 (redirect-after-POST)
    tab.goto("/admin/firmware.html")
    tab.upload(page, firmware)
    return ["/general/status.html", settings, "/admin/firmware_upload.html"]


def ricoh(tab: SessionTab, firmware: Firmware) -> list[str]:
    page = tab.page
    # / jumped by script to the frameset
    assert "/web/guest/en/websys/webArch/mainFrame.cgi" in page.url, page.url
    page.frame_locator("frame[name=header]").locator("#login-link").click()
    work = page.frame_locator("frame[name=work]")
    work.locator("#userid_work").fill("admin")
    work.locator("#password_work").fill("")
    tab.shot("login-form")
    work.locator("#login").click()
    page.wait_for_url("**/web/entry/en/websys/webArch/mainFrame.cgi", timeout=15_000)
    wimsesid = device_cookies(page.context.cookies(tab.origin)).get("wimsesid")
    assert wimsesid is not None and wimsesid["value"] != "--"
    menu = page.frame_locator("frame[name=menu]")
    menu.get_by_text("Device Information").click()
    frame = _frame(page, "work", "deviceInfo.cgi")
    tab.shot("settings")

    def reload_work() -> Frame:
        menu.get_by_text("Job Log").click()
        _frame(page, "work", "jobLog.cgi")
        menu.get_by_text("Device Information").click()
        return _frame(page, "work", "deviceInfo.cgi")

    tab.change_setting(frame, reload_work)
    menu.get_by_text("Firmware Update").click()
    tab.upload(_frame(page, "work", "firmware.cgi"), firmware)
    return ["/", "/web/guest/en/websys/webArch/mainFrame.cgi",
            "/web/guest/en/websys/webArch/login.cgi",
            "/web/entry/en/websys/config/deviceInfo.cgi",
            "/web/entry/en/websys/config/firmwareUpload.cgi"]


def _frame(page: Page, name: str, url_part: str) -> Frame:
    """The named frame once it shows ``url_part`` and has loaded."""
    for _ in range(150):
        frame = page.frame(name=name)
        if frame is not None and url_part in frame.url:
            frame.wait_for_load_state("load")
            return frame
        page.wait_for_timeout(100)
    raise AssertionError(f"frame {name} never showed {url_part}: "
                         f"{[(f.name, f.url) for f in page.frames]}")


def sharp(tab: SessionTab, firmware: Firmware) -> list[str]:
    # the Digest challenge on /admin/ is answered from the context's http_credentials
    out = _simple(tab, firmware, "/admin/settings.html", "/admin/firmware.html")
    return ["/", "/menu.html", "/main.html", *out, "/admin/firmware_upload.html"]


def absolute(tab: SessionTab, firmware: Firmware) -> list[str]:
    page = tab.page
    # the script's fetch() and WebSocket named the device; both reached it through the session
    expect(page.locator("#live-status")).to_contain_text("VCF9Z01234", timeout=15_000)
    expect(page.locator("#ws-status")).to_contain_text("#", timeout=15_000)
    tab.shot("live-status")
    for link in ("#ip-link", "#host-link"):
        page.click(link)
        page.wait_for_load_state("load")
        assert page.url.startswith(tab.origin + "/app/index.html"), page.url
    cookies = device_cookies(page.context.cookies(tab.url("/app/index.html")))
    assert "rtlang" in cookies, cookies          # Domain=<device-ip> was rewritten by the relay
    page.get_by_role("link", name="Compressed page").click()
    page.wait_for_load_state("load")
    assert page.url.startswith(tab.origin + "/app/gz.html"), page.url
    tab.shot("gzip-page")
    return ["/", "/app/index.html", "/app/api/status.json", "/app/ws/status", "/app/gz.html",
            *_simple(tab, firmware, "/app/settings.html", "/app/firmware.html"),
            "/app/firmware_upload.cgi"]


def panel(tab: SessionTab, firmware: Firmware) -> list[str]:
    page = tab.page
    for path in ("/panel/", "/panel/absolute.html"):
        if not page.url.endswith(path):
            tab.goto(path)
        expect(page.locator("#conn")).to_have_text("connected", timeout=15_000)
        first_seq = int(page.locator("#seq").inner_text())
        expect(page.locator("#seq")).not_to_have_text(str(first_seq), timeout=10_000)
        before = page.locator("#lcd").inner_text()
        page.click("#key-home")
        page.click("#key-menu")
        expect(page.locator("#lcd")).not_to_have_text(before, timeout=10_000)
        tab.shot("panel-" + ("absolute" if "absolute" in path else "relative"))
        page.click("#key-home")
    return ["/", "/panel/", "/panel/ws", "/panel/absolute.html",
            *_simple(tab, firmware, "/settings.html", "/firmware.html"),
            "/firmware_upload.html"]


def konica(tab: SessionTab, firmware: Firmware) -> list[str]:
    page = tab.page
    page.fill("#password", "1234567812345678")
    page.click("#login")
    page.wait_for_url("**/wcd/admin/system.html*", timeout=15_000)
    tab.shot("admin-logged-in")
    settings = "/wcd/admin/system.html"
    tab.change_setting(page, _reload(tab, settings))
    tab.goto("/wcd/admin/firmware.html")
    tab.upload(page, firmware)
    tab.goto("/wcd/index.html")
    expect(page.locator("body")).to_contain_text("locked")
    if tab.second_session is not None:
        # another browser (another session) is refused while this admin session is active
        other = tab.second_session()
        other.fill("#password", "1234567812345678")
        other.click("#login")
        expect(other.locator("#login-refused")).to_be_visible()
        tab.shot("second-admin-refused", other)
    page.click("#logout")                     # free the single admin session for the next person
    page.wait_for_load_state("load")
    tab.shot("logged-out")
    return ["/wcd/index.html", "/wcd/login.cgi", settings, "/wcd/admin/firmware_upload.cgi",
            "/wcd/logout.cgi"]


def legacyhttp(tab: SessionTab, firmware: Firmware) -> list[str]:
    page = tab.page
    for path, marker in (("/chunked.html", "chunk"), ("/slow.html?seconds=1", "")):
        tab.goto(path)
        if marker:
            expect(page.locator("body")).to_contain_text(marker, ignore_case=True)
    tab.shot("quirk-pages")
    return ["/", "/chunked.html", "/slow.html?seconds=1",
            *_simple(tab, firmware, "/settings.html", "/firmware.html"),
            "/firmware_upload.cgi"]


STEPS: dict[str, Callable[[SessionTab, Firmware], list[str]]] = {
    "hp": hp, "brother": brother, "ricoh": ricoh, "sharp": sharp, "absolute": absolute,
    "panel": panel, "konica": konica, "legacyhttp": legacyhttp,
}


def log_paths(entries: list[dict[str, Any]]) -> set[str]:
    """The request targets of a Remote Technician Log (the URL as logged: path and query)."""
    return {str(entry["url"]) for entry in entries}
