"""The pages a browser must run: the panel's JS and WebSocket, Ricoh's script jump, frames and
base64 login, Sharp's Digest prompt, and the absolute profile's scripts, straight from the
device in Chromium (no relay in between; the relay's own browser suite goes through it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ewsgate.devicesim.device import RunningDevice, start_device

from .conftest import LOOPBACK

# one Chromium for the module: every test and fixture here runs on the module's event loop
pytestmark = [pytest.mark.integration, pytest.mark.browser,
              pytest.mark.asyncio(loop_scope="module")]

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest_asyncio.fixture(loop_scope="module")
async def device_factory() -> AsyncIterator[Any]:
    started: list[RunningDevice] = []

    async def start(profile: str, **kwargs: Any) -> RunningDevice:
        started.append(await start_device(profile, http=LOOPBACK, **kwargs))
        return started[-1]

    yield start
    for device in started:
        await device.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                   args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def test_panel_page_renders_frames_and_sends_keys(device_factory, browser,
                                                         artifacts_dir) -> None:
    device = await device_factory("panel")
    page = await browser.new_page()
    await page.goto(device.url("http", "/"))
    await page.wait_for_function("document.getElementById('conn').textContent === 'connected'")
    await page.wait_for_function("document.getElementById('lcd').textContent.includes('Ready')")
    await page.click("#key-menu")
    await page.click("#key-down")
    await page.click("#key-ok")
    await page.wait_for_function(
        "document.getElementById('lcd').textContent.includes('PAPER SETUP')")
    await page.screenshot(path=artifacts_dir / "devicesim-panel.png")
    absolute = await browser.new_page()
    await absolute.goto(device.url("http", "/panel/absolute.html"))
    await absolute.wait_for_function(
        "document.getElementById('conn').textContent === 'connected'")


async def test_ricoh_script_jump_frames_and_base64_login(device_factory, browser,
                                                         artifacts_dir) -> None:
    device = await device_factory("ricoh")
    page = await browser.new_page()
    await page.goto(device.url("http", "/"))
    await page.wait_for_url("**/web/guest/en/websys/webArch/mainFrame.cgi")
    header = page.frame(name="header")
    await header.click("#login-link")
    work = page.frame(name="work")
    await work.wait_for_selector("#userid_work")
    await work.fill("#userid_work", "admin")
    await work.click("#login")
    await page.wait_for_url("**/web/entry/en/websys/webArch/mainFrame.cgi")
    menu = page.frame(name="menu")
    await menu.click("text=Device Information")
    work = page.frame(name="work")
    await work.wait_for_selector("#settings-form")
    await work.fill("#location", "Chromium room")
    await work.click("#apply")
    await work.wait_for_selector("#saved")
    assert device.context.state.settings["location"] == "Chromium room"
    await page.screenshot(path=artifacts_dir / "devicesim-ricoh.png")


async def test_sharp_digest_prompt_is_answered_by_chromium(device_factory, browser) -> None:
    device = await device_factory("sharp")
    seen = []
    check = device.profile.admin_auth.check

    def observed_check(method: str, target: str, authorization: str | None) -> Any:
        seen.append((authorization or "").split(" ", 1)[0])
        return check(method, target, authorization)

    device.profile.admin_auth.check = observed_check
    context = await browser.new_context(http_credentials={"username": "admin",
                                                          "password": "admin"})
    page = await context.new_page()
    response = await page.goto(device.url("http", "/admin/settings.html"))
    assert response.status == 200
    assert "Digest" in seen and "Basic" not in seen  # Chromium picks Digest over Basic
    await page.fill("#contact", "Chromium")
    await page.click("#apply")
    await page.wait_for_selector("#saved")
    assert device.context.state.settings["contact"] == "Chromium"


async def test_absolute_scripts_fetch_and_websocket_run(device_factory, browser) -> None:
    device = await device_factory("absolute")
    page = await browser.new_page()
    await page.goto(device.url("http", "/"))
    await page.wait_for_function(
        "document.getElementById('live-status').textContent.startsWith('Ready')")
    await page.wait_for_function(
        "document.getElementById('ws-status').textContent.startsWith('Ready #')")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["rtlang"]["path"] == "/app"


async def test_chromium_refuses_the_legacy_tls_device(device_factory, browser) -> None:
    """The premise of the brother profile: Chromium itself cannot open a TLS 1.0/1.1 EWS, even
    with certificate errors ignored, so the agent must terminate that TLS."""
    device = await device_factory("brother", https=LOOPBACK)
    context = await browser.new_context(ignore_https_errors=True)
    page = await context.new_page()
    with pytest.raises(Exception, match="ERR_SSL_VERSION_OR_CIPHER_MISMATCH"):
        await page.goto(device.url("https", "/general/status.html"))
    await context.close()


async def test_cookiejs_login_writes_and_reads_its_cookies_in_script(device_factory,
                                                                    browser) -> None:
    device = await device_factory("cookiejs")
    page = await browser.new_page()
    await page.goto(device.url("http", "/"))
    await page.wait_for_selector("#login-form", state="visible")
    await page.fill("#user", "admin")
    await page.fill("#password", "admin")
    await page.select_option("#language", "de")
    await page.click("#login")
    await page.wait_for_url("**/app/status.html")
    assert await page.text_content("#who") == "admin"
    assert await page.text_content("#lang") == "de"
    assert await page.text_content("#theme") == "blue"
    assert await page.text_content("#session-hidden") == "hidden"
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["ews_theme"]["path"] == "/app" and cookies["EWSSESSION"]["httpOnly"]
    await page.goto(device.url("http", "/logout.html"))
    await page.wait_for_selector("#logged-out")
    assert "ews_user" not in {c["name"] for c in await page.context.cookies()}


async def test_cookiejs_refuses_a_login_whose_script_cookies_did_not_arrive(
        device_factory, browser) -> None:
    device = await device_factory("cookiejs")
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(device.url("http", "/login.html"))
    assert await page.is_hidden("#login-form")  # the form appears only from script
    response = await page.request.post(device.url("http", "/login.cgi"),
                                       form={"user": "admin", "password": "admin"})
    assert "did not arrive" in await response.text()
    await context.close()
