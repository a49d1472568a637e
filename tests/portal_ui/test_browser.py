"""The portal in a real browser: a real ``ewsgate portal`` process, Debian's Chromium.

The walk: the administrator signs in and gives Carl the Remote Technician Configurer role on
Acme; Carl signs in and flips the Remote Technician switch of a device on; Vera, a plain Viewer,
sees the device but no switch. The portal is seeded the way an operator would: the first user
with ``ewsgate admin create-user``, a token with ``ewsgate admin create-token``, the inventory
and the other users (Viewers to begin with) through the REST API. Every page visited is saved
as a screenshot under ``build/test-artifacts/portal-ui/``; a Content-Security-Policy violation
on any page fails the test (the pages must need nothing the strict policy forbids).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORD = "a long demo password"


@dataclass
class Portal:
    url: str
    device_id: int
    acme_id: int
    emails: dict[str, str]
    enrol_address: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ewsgate(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run([sys.executable, "-m", "ewsgate", *args], env=env, timeout=timeout,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"ewsgate {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the portal exited with {process.returncode}:\n"
                                 f"{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/login", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the portal did not answer within 120 s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    data_dir = tmp_path / "portal"
    env = {**os.environ, "EWSGATE_DATA_DIR": str(data_dir)}
    env.pop("EWSGATE_DATABASE_URL", None)
    emails = {"admin": "admin@example.com", "carl": "carl@example.com",
              "vera": "vera@example.com"}
    _ewsgate("admin", "create-user", "--email", emails["admin"], "--password", PASSWORD,
             "--role", "administrator", "--name", "Alice Admin", env=env)
    token = _ewsgate("admin", "create-token", "--email", emails["admin"], env=env).strip()
    token = token.split()[-1]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    enrol_address = f"127.0.0.1:{_free_port()}"
    log = tmp_path / "portal.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ewsgate", "portal", "--listen", f"127.0.0.1:{port}",
             "--grpc-listen", f"127.0.0.1:{_free_port()}",
             "--enrol-listen", enrol_address, "--data-dir", str(data_dir)],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, process, log)
        api = httpx.Client(base_url=url + "/api/v1", timeout=30,
                           headers={"Authorization": f"Bearer {token}"})
        with api:
            def post(path: str, body: dict[str, object]) -> dict[str, object]:
                response = api.post(path, json=body)
                assert response.status_code in (200, 201), response.text
                return dict(response.json())

            acme = post("/customers", {"name": "Acme Logistics"})
            warehouse = post("/customers", {"name": "Warehouse", "parent_id": acme["id"]})
            hq = post("/installations", {"customer_id": acme["id"], "name": "HQ 2nd floor"})
            wh = post("/installations", {"customer_id": warehouse["id"], "name": "Warehouse PC"})
            device = post("/devices", {
                "installation_id": hq["id"], "name": "Reception MFP", "make": "hp",
                "model": "LaserJet Enterprise M507", "ip": "10.20.0.15",
                "mac": "3c:52:82:11:22:33", "serial": "CNBRM5K0QZ",
                "ews_endpoints": [{"scheme": "https", "port": 443}]})
            post("/devices", {"installation_id": hq["id"], "name": "Accounts printer",
                              "make": "ricoh", "model": "IM C3000", "ip": "10.20.0.22",
                              "mac": "00:26:73:44:55:66"})
            post("/devices", {"installation_id": wh["id"], "name": "Warehouse label",
                              "make": "kyocera", "model": "ECOSYS P3145dn",
                              "ip": "10.30.0.40", "mac": "00:c0:ee:77:88:99"})
            for who, name, scope in (("carl", "Carl Configurer", acme["id"]),
                                     ("vera", "Vera Viewer", None)):
                user = post("/users", {"email": emails[who], "password": PASSWORD,
                                       "name": name})
                post("/role-assignments", {"user_id": user["id"], "role": "viewer",
                                           "customer_id": scope})
        yield Portal(url, int(str(device["id"])), int(str(acme["id"])), emails, enrol_address)
    finally:
        # shown by pytest only when the test fails: what the portal said
        print(f"--- portal log (tail) ---\n{log.read_text(errors='replace')[-4000:]}")
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture
def shots(artifacts_dir: Path) -> Path:
    directory = artifacts_dir / "portal-ui"
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    return directory


def test_admin_grants_configurer_who_flips_the_switch_and_a_viewer_sees_none(
        portal: Portal, shots: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # the machine may be busy: generous, never a race

    csp_violations: list[str] = []
    counter = iter(range(1, 100))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            def new_page():  # one browser context per person: separate cookies
                context = browser.new_context(viewport={"width": 1280, "height": 860})
                page = context.new_page()
                page.set_default_timeout(20_000)
                page.on("console", lambda m: csp_violations.append(m.text)
                        if "Content Security Policy" in m.text else None)
                return page

            def snap(page, name: str) -> None:
                page.screenshot(path=str(shots / f"{next(counter):02d}-{name}.png"),
                                full_page=True)

            def sign_in(page, who: str) -> None:
                page.goto(portal.url + "/devices")
                expect(page).to_have_url(f"{portal.url}/login?next=%2Fdevices")
                page.get_by_label("E-mail", exact=True).fill(portal.emails[who])
                page.get_by_label("Password", exact=True).fill(PASSWORD)
                snap(page, f"{who}-sign-in")
                page.get_by_role("button", name="Sign in").click()
                expect(page).to_have_url(portal.url + "/devices")

            def device_page(page):
                page.get_by_role("link", name="Reception MFP").click()
                expect(page).to_have_url(f"{portal.url}/devices/{portal.device_id}")
                expect(page.get_by_role("heading", name="Reception MFP")).to_be_visible()

            # 1. The administrator gives Carl the Configurer role on Acme.
            admin = new_page()
            sign_in(admin, "admin")
            expect(admin.get_by_role("link", name="Warehouse label")).to_be_visible()
            snap(admin, "admin-devices")
            admin.get_by_label("Make", exact=True).select_option("ricoh")
            expect(admin).to_have_url(f"{portal.url}/devices?q=&customer=&installation=&make="
                                      "ricoh&rt=")
            expect(admin.get_by_role("link", name="Reception MFP")).to_have_count(0)
            snap(admin, "admin-devices-filtered")
            admin.goto(portal.url + "/devices")
            device_page(admin)
            expect(admin.get_by_role("switch")).to_have_count(0)
            snap(admin, "admin-device")
            for section in ("Installations", "Customers", "Jobs"):
                admin.get_by_role("navigation", name="Sections").get_by_role(
                    "link", name=section).click()
                expect(admin.get_by_role("heading", name=section, level=1)).to_be_visible()
                snap(admin, f"admin-{section.lower()}")
            admin.get_by_role("link", name="Installations").click()
            admin.get_by_label("Name", exact=True).fill("Front desk PC")
            admin.get_by_label("Customer", exact=True).select_option(str(portal.acme_id))
            admin.get_by_role("button", name="Create and get token").click()
            expect(admin.locator("#enrol-command")).to_contain_text(
                f"ewsgate agent enroll --portal {portal.enrol_address} --token ewse_")
            expect(admin.get_by_role("cell", name="Front desk PC")).to_be_visible()
            snap(admin, "admin-installation-enrolment-token")
            admin.get_by_role("navigation", name="Sections").get_by_role(
                "link", name="Audit").click()  # the trail shows what the admin just did
            expect(admin.get_by_role("heading", name="Audit", level=1)).to_be_visible()
            expect(admin.get_by_role("cell", name="installation.create").first).to_be_visible()
            snap(admin, "admin-audit")
            admin.get_by_role("link", name="Users & roles").click()
            expect(admin.get_by_role("link", name="Carl Configurer")).to_be_visible()
            snap(admin, "admin-users")
            admin.get_by_role("link", name="Carl Configurer").click()
            admin.get_by_label("Role", exact=True).select_option("configurer")
            admin.get_by_label("Scope", exact=True).select_option(str(portal.acme_id))
            admin.get_by_role("button", name="Give role").click()
            expect(admin.get_by_text("The role was given.")).to_be_visible()
            expect(admin.get_by_role("cell", name="Remote Technician Configurer",
                                     exact=True)).to_be_visible()
            snap(admin, "admin-user-role-given")
            admin.get_by_role("link", name="Alice Admin").click()
            admin.get_by_label("Token name", exact=True).fill("release script")
            admin.get_by_role("button", name="Create token").click()
            expect(admin.locator("#token-value")).to_contain_text("ewst_")
            snap(admin, "admin-api-token-once")
            admin.get_by_role("button", name="Sign out").click()
            expect(admin.get_by_text("You are signed out.")).to_be_visible()

            # 2. Carl signs in and turns Remote Technician on.
            carl = new_page()
            sign_in(carl, "carl")
            expect(carl.get_by_role("link", name="Users & roles")).to_have_count(0)
            snap(carl, "carl-devices")
            device_page(carl)
            switch = carl.get_by_role("switch", name="Allow Remote Technician sessions")
            expect(switch).to_have_attribute("aria-checked", "false")
            snap(carl, "carl-device-off")
            switch.click()
            expect(carl.get_by_text("Remote Technician is now enabled")).to_be_visible()
            expect(carl.get_by_role("switch")).to_have_attribute("aria-checked", "true")
            expect(carl.locator("#open-device")).to_have_count(0)  # a Configurer, not a User
            snap(carl, "carl-device-on")
            carl.get_by_role("link", name="Devices").first.click()
            carl.get_by_label("Remote Technician", exact=True).select_option("on")
            expect(carl.get_by_role("link", name="Reception MFP")).to_be_visible()
            expect(carl.get_by_role("link", name="Accounts printer")).to_have_count(0)
            snap(carl, "carl-devices-enabled")

            # 3. Vera, a plain Viewer, sees the device but no switch and no button.
            vera = new_page()
            sign_in(vera, "vera")
            device_page(vera)
            expect(vera.get_by_role("switch")).to_have_count(0)
            expect(vera.locator("#open-device")).to_have_count(0)
            expect(vera.locator("#rt-state")).to_contain_text("Enabled")
            snap(vera, "vera-device-no-switch")
        finally:
            browser.close()
    assert csp_violations == []
    assert len(list(shots.glob("*.png"))) >= 18
