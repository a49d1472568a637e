"""In Chromium: sign-in through the portal, the CSP confining a device page, cross-site forms.

The relay runs in-process over real TLS; Chromium resolves ``*.rt.localhost`` to loopback and
is told to accept the test CA's certificate (``ignore_https_errors``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import FakePortal, RawServer, Relay, Seen, device_app

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

PROBE = """<!doctype html><html><body><pre id="out">running</pre><script>
const targets = %s;
const results = {violations: []};
document.addEventListener('securitypolicyviolation',
                          (e) => results.violations.push(e.violatedDirective));
async function probe(name, url) {
  // no-cors: without the CSP each of these would resolve (opaque response, status 0)
  try { const r = await fetch(url, {mode: 'no-cors'}); results[name] = 'status ' + r.status; }
  catch (e) { results[name] = 'blocked'; }
}
(async () => {
  for (const [name, url] of Object.entries(targets)) { await probe(name, url); }
  await new Promise((done) => setTimeout(done, 300));  // violation events are queued
  document.getElementById('out').textContent = JSON.stringify(results);
})();
</script></body></html>"""


async def _browser():
    playwright_api = pytest.importorskip("playwright.async_api")
    manager = playwright_api.async_playwright()
    playwright = await manager.__aenter__()
    browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                               args=CHROMIUM_ARGS)
    return manager, browser


async def test_device_page_can_reach_only_its_own_session(
        tmp_path: Path, portal: FakePortal, artifacts_dir: Path) -> None:
    seen = Seen()
    routes: dict = {"/same": lambda r, b: (200, [("Content-Type", "text/plain")], b"same")}
    async with RawServer(device_app(routes, seen)) as device, \
            RawServer(device_app({}, Seen())) as third, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        other = relay.add_device(device.port)
        targets = {
            "same": "/same",
            "portal": portal.url + "/.well-known/jwks.json",
            "other_session": f"https://{relay.host(other)}/same",
            "third": f"http://127.0.0.1:{third.port}/",
        }
        page_html = (PROBE % json.dumps(targets)).encode()
        routes["/"] = lambda r, b: (200, [("Content-Type", "text/html")], page_html)
        manager, browser = await _browser()
        try:
            context = await browser.new_context(ignore_https_errors=True)
            page = await context.new_page()
            await page.goto(f"https://{relay.host(sid)}/", wait_until="load")
            # the OAuth round trip ran in the browser and landed on the device's page
            assert page.url == f"https://{relay.host(sid)}/"
            await page.wait_for_function(
                "document.getElementById('out').textContent !== 'running'", timeout=15000)
            results = json.loads(await page.text_content("#out"))
            await page.screenshot(path=str(artifacts_dir / "relay-csp-probe.png"))
            cookies = {c["name"]: c for c in await context.cookies()}
        finally:
            await browser.close()
            await manager.__aexit__(None, None, None)
    assert results["same"] == "status 200"
    assert results["portal"] == "blocked"
    assert results["other_session"] == "blocked"
    assert results["third"] == "blocked"
    assert results["violations"].count("connect-src") >= 3
    session_cookie = cookies["__Host-ewsgate_rt"]
    assert session_cookie["httpOnly"] and session_cookie["secure"]
    assert session_cookie["domain"] == relay.host(sid).split(":")[0]  # host-only
    assert {r.target for r, _ in seen.requests} <= {b"/", b"/same", b"/favicon.ico"}


async def test_cross_site_form_post_is_refused_in_the_browser(
        tmp_path: Path, portal: FakePortal, artifacts_dir: Path) -> None:
    seen = Seen()
    routes = {"/": lambda r, b: (200, [("Content-Type", "text/html")], b"<p>device</p>"),
              "/settings": lambda r, b: (200, [("Content-Type", "text/plain")], b"changed")}
    async with RawServer(device_app(routes, seen)) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        portal.evil_page = (
            f'<form id="f" method="POST" action="https://{relay.host(sid)}/settings">'
            '<input name="toner" value="0"></form><script>document.getElementById("f").submit()'
            "</script>")
        manager, browser = await _browser()
        try:
            context = await browser.new_context(ignore_https_errors=True)
            page = await context.new_page()
            await page.goto(f"https://{relay.host(sid)}/", wait_until="load")
            assert "device" in await page.content()
            response_status = []
            page.on("response", lambda r: response_status.append((r.url, r.status)))
            await page.goto(portal.url + "/evil")
            await page.wait_for_url(f"https://{relay.host(sid)}/settings", timeout=15000)
            await page.wait_for_load_state("load")
            body = await page.content()
            await page.screenshot(path=str(artifacts_dir / "relay-cross-site-refused.png"))
        finally:
            await browser.close()
            await manager.__aexit__(None, None, None)
    # Chromium withholds the SameSite=Lax cookie on a cross-site POST (401, not signed in); a
    # browser that sent it would meet the Sec-Fetch-Site check (403). Either way: no POST.
    statuses = [status for url, status in response_status if url.endswith("/settings")]
    assert statuses and statuses[0] in (401, 403), (statuses, body[:300])
    assert not any(r.method == b"POST" for r, _ in seen.requests)
