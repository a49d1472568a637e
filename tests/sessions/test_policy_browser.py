"""Approval in Chromium: a technician asks for a session with a reason; the customer's approver
approves it in the portal and the session opens for the technician; a denied request shows the
technician who denied it and why. The portal is the real app under uvicorn on loopback, with
its strict CSP (a violation fails the test); the agent is rt_world's scripted hub."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from sessions.rt_http import Portal
from sessions.rt_world import PASSWORD
from sessions.test_browser import CHROMIUM_ARGS, served  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.db]


async def _sign_in(context, base: str, email: str, violations: list[str]):
    page = await context.new_page()
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.goto(base + "/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/devices**")
    return page


async def test_request_with_a_reason_approved_then_one_denied(
        portal: Portal, served: str, artifacts_dir: Path) -> None:  # noqa: F811
    from playwright.async_api import async_playwright, expect

    world = portal.world
    await world.set_policy(approval="required", reason="required")
    world.hub.script = [("ok", {})]
    shots = artifacts_dir / "policy"
    shots.mkdir(parents=True, exist_ok=True)
    violations: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=CHROMIUM_ARGS)
        try:
            tech_ctx, approver_ctx = await browser.new_context(), await browser.new_context()

            async def relay_stub(route) -> None:
                await route.fulfill(body="<p>device page</p>", content_type="text/html")

            await tech_ctx.route(re.compile(r"https://s-[a-z2-7]{32}\.rt2?\.localhost.*"),
                                 relay_stub)
            tech = await _sign_in(tech_ctx, served, world.emails["tech"], violations)
            await tech.goto(f"{served}/devices/{world.device['on']}")
            await expect(tech.locator("#effective-policy")).to_contain_text("Approval required")
            await expect(tech.locator("#open-device")).to_have_text("Request approval")
            await tech.fill("#open-reason", "scan to e-mail fails since Monday")
            await tech.fill("#open-ticket", "INC-4711")
            await tech.click("#open-device")
            await tech.wait_for_url("**/session-requests/*")
            request_url = tech.url
            await expect(tech.locator("#request-status")).to_have_text("pending")
            await tech.screenshot(path=str(shots / "request-pending.png"))

            approver = await _sign_in(approver_ctx, served, world.emails["approverA"],
                                      violations)
            await approver.goto(f"{served}/session-requests")
            await expect(approver.locator("body")).to_contain_text(
                "scan to e-mail fails since Monday")
            await expect(approver.locator("body")).to_contain_text("INC-4711")
            await approver.click(f"a[href='/session-requests/{request_url.rsplit('/', 1)[1]}']")
            await approver.fill("#approve-note", "ok, before noon")
            await approver.click("#approve")
            await expect(approver.locator("#request-status")).to_have_text("used")
            await expect(approver.locator("#request-decided-by")).to_have_text(
                world.emails["approverA"])
            await approver.screenshot(path=str(shots / "request-approved.png"))

            await tech.goto(request_url)
            await tech.click("#request-session")
            await tech.wait_for_url("**/remote-sessions/*")
            await expect(tech.locator("#rt-status")).to_have_text("ready", timeout=15_000)

            # a second request is denied: the technician reads who and why
            await tech.click("#rt-end-form button")
            await expect(tech.locator("#rt-status")).to_have_text("ended", timeout=15_000)
            await tech.goto(f"{served}/devices/{world.device['on']}")
            await tech.fill("#open-reason", "again, please")
            await tech.click("#open-device")
            await tech.wait_for_url("**/session-requests/*")
            second = tech.url
            await approver.goto(second)
            await approver.fill("#deny-reason", "month-end printing runs until 18:00")
            await approver.click("#deny")
            await expect(approver.locator("#request-status")).to_have_text("denied")
            await tech.goto(second)
            await expect(tech.locator("#request-status")).to_have_text("denied")
            await expect(tech.locator("#request-decided-by")).to_have_text(
                world.emails["approverA"])
            await expect(tech.locator("#request-decision-reason")).to_have_text(
                "month-end printing runs until 18:00")
            await tech.screenshot(path=str(shots / "request-denied.png"))
        finally:
            await browser.close()
    await asyncio.sleep(0)
    assert violations == []
