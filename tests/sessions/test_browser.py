"""The session pages in Chromium: the button, live progress, the new tab when ready, the
countdown, the live Remote Technician Log on the job page, and *End* — with the portal's strict
CSP (a violation fails the test).

The portal is the real application served by uvicorn on a free loopback port in this event loop;
the agent is the scripted hub of rt_world.py (held at "verifying" until the test releases it).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from ewsgate.portal.oauth.client_auth import basic_auth_header
from sessions.rt_http import Portal
from sessions.rt_world import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.db]

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def served(portal: Portal) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(portal.app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        sock.close()


async def test_open_progress_new_tab_countdown_live_log_and_end(
        portal: Portal, served: str, artifacts_dir: Path) -> None:
    from playwright.async_api import async_playwright, expect

    world = portal.world
    world.hub.script = [("progress", "verifying"), ("wait",), ("progress", "connecting"),
                        ("ok", {})]
    shots = artifacts_dir / "sessions"
    shots.mkdir(parents=True, exist_ok=True)
    violations: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            # the relay is not part of this test: its origin answers with a stub page
            relay_hits: list[str] = []

            async def relay_stub(route) -> None:
                relay_hits.append(route.request.url)
                await route.fulfill(body="<p>device page</p>", content_type="text/html")

            await context.route(re.compile(r"https://s-[a-z2-7]{32}\.rt2?\.localhost.*"),
                                relay_stub)
            page = await context.new_page()
            page.on("console", lambda m: violations.append(m.text)
                    if "Content Security Policy" in m.text else None)
            page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
            await page.goto(served + "/login")
            await page.fill("input[name=email]", world.emails["tech"])
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/devices**")
            await page.goto(f"{served}/devices/{world.device['on']}")
            await expect(page.locator("#rt-device-sessions")).to_be_hidden()
            await page.click("#open-device")
            await page.wait_for_url("**/remote-sessions/*")
            session_id = page.url.rsplit("/", 1)[1]
            await expect(page.locator("#rt-status")).to_have_text("verifying", timeout=15_000)
            assert not await page.is_visible("#rt-open")
            await page.screenshot(path=str(shots / "progress-verifying.png"))

            first = await page.text_content("#rt-countdown")
            async with context.expect_page(timeout=15_000) as opened:
                world.hub.release()
                await expect(page.locator("#rt-status")).to_have_text("ready", timeout=15_000)
            new_tab = await opened.value
            await new_tab.wait_for_load_state()
            assert new_tab.url.startswith(f"https://s-{session_id}."), new_tab.url
            assert relay_hits and relay_hits[0] == new_tab.url
            await new_tab.close()
            assert await page.is_visible("#rt-open")
            await page.wait_for_timeout(1200)
            assert await page.text_content("#rt-countdown") != first, "the countdown moves"
            assert await page.locator("li.rt-done").count() == 3
            await page.screenshot(path=str(shots / "progress-ready.png"))

            device_page = await context.new_page()
            await device_page.goto(f"{served}/devices/{world.device['on']}")
            widget = device_page.locator("#rt-device-sessions")
            await expect(widget).to_be_visible(timeout=10_000)
            await expect(widget).to_contain_text("Live session (ready)")
            await expect(widget.locator("button")).to_have_text("End")
            await device_page.close()

            job_id = int((await page.get_attribute("a[href^='/jobs/']", "href")).split("/")[-1])
            job_page = await context.new_page()
            job_page.on("console", lambda m: violations.append(m.text)
                        if "Content Security Policy" in m.text else None)
            await job_page.goto(f"{served}/jobs/{job_id}")
            assert await job_page.get_attribute("#remote-technician-log",
                                                "data-live-log") == "true"
            relay = str(world.relays["relay-x"])
            async with httpx.AsyncClient(base_url=served) as api:
                shipped = await api.post("/api/v1/relay/log-batches", json={"entries": [
                    {"session_id": session_id, "seq": 1, "time": 1796040000.25,
                     "user": "tech@example.com", "method": "GET", "url": "/status.html",
                     "status": 200, "bytes_in": 0, "bytes_out": 2048, "duration_ms": 7,
                     "outcome": "ok", "detail": None}]},
                    headers={"Authorization": basic_auth_header(
                        relay, world.relay_secrets["relay-x"])})
                assert shipped.json()["accepted"] == 1
            await job_page.wait_for_selector("text=GET /status.html", timeout=10_000)
            await job_page.screenshot(path=str(shots / "job-live-log.png"))

            await page.click("#rt-end-form button")
            await expect(page.locator("#rt-status")).to_have_text("ended", timeout=15_000)
            assert not await page.is_visible("#rt-open")
            await page.screenshot(path=str(shots / "progress-ended.png"))
        finally:
            await browser.close()
    assert violations == [], violations
