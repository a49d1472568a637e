"""*Open device web page* in Chromium, end to end, against the shared ``demo`` stack.

A technician signs in to the portal UI, clicks *Open device web page* on the device page, the
progress page opens the session origin in a new tab, the relay sends the browser through the
portal's OAuth sign-in, and the device's own page arrives with its fetch and WebSocket working
through the relay. The negatives run in the same browser, where only a browser can show them:
the relay's CSP blocking ``fetch()`` to the portal, to another session's origin and to a third
origin; a same-site form POST from another ``*.rt.localhost`` origin refused although the
browser sends the session cookie with it; the device's ``Domain`` cookie kept host-only.

Screenshots go to ``build/test-artifacts/e2e/``.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from ewsgate.demo import DemoInfo
from ewsgate.relay.device_cookies import DeviceCookies

from .conftest import OpenedSession, open_session

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(180)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "e2e"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
    finally:
        ctx.close()


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _portal_sign_in(page: Page, demo: DemoInfo, login: str = "technician") -> None:
    credentials = demo.logins[login]
    page.goto(f"{demo.portal_url}/login")
    page.get_by_label("E-mail", exact=True).fill(credentials["email"])
    page.get_by_label("Password", exact=True).fill(credentials["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def _device_page_in_tab(context: BrowserContext, demo: DemoInfo, opened: OpenedSession,
                        path: str = "/app/index.html") -> Page:
    """Sign in to the portal in this browser and go through the relay's OAuth to ``path``."""
    page = context.new_page()
    _portal_sign_in(page, demo)
    page.goto(_origin(opened.url) + path)
    page.wait_for_url(_origin(opened.url) + path)
    return page


def _end(demo: DemoInfo, opened: OpenedSession) -> None:
    opened.client.delete(f"{demo.api_url}/remote-sessions/{opened.id}",
                         headers={"X-CSRF-Token": opened.csrf, "Origin": demo.portal_url})
    opened.client.close()


def test_technician_clicks_open_device_web_page_and_uses_the_device(
        demo: DemoInfo, context: BrowserContext) -> None:
    device = demo.device("absolute")
    portal = context.new_page()
    _portal_sign_in(portal, demo)
    portal.goto(f"{demo.portal_url}/devices/{device.id}")
    _shot(portal, "01-device-page")
    with context.expect_page(timeout=60_000) as new_tab:
        portal.locator("#open-device").click()
        portal.wait_for_url("**/remote-sessions/**")
    progress_url = portal.url
    session_url = portal.locator("#rt-session").get_attribute("data-url")
    assert session_url and session_url.startswith("https://s-")
    tab = new_tab.value
    # the relay → portal /oauth/authorize → relay callback → the device's own redirect
    tab.wait_for_url(_origin(session_url) + "/app/index.html", timeout=60_000)
    tab.wait_for_load_state("load")
    assert "KYOCERA" in tab.content() or "Command Center" in tab.content()
    # the page's own fetch() and WebSocket (absolute URLs rewritten) work through the relay
    live = tab.locator("#live-status")
    ws = tab.locator("#ws-status")
    live.filter(has_not_text="loading").wait_for()
    tab.wait_for_function("() => /#\\d+/.test(document.getElementById('ws-status').textContent)")
    assert "error" not in live.inner_text().lower(), live.inner_text()
    assert "error" not in ws.inner_text().lower(), ws.inner_text()
    _shot(tab, "02-device-page-through-relay")
    # the portal page shows the session ready, with a countdown
    portal.bring_to_front()
    portal.locator("#rt-status", has_text="ready").wait_for()
    _shot(portal, "03-progress-ready")
    host = urlsplit(session_url).hostname or ""
    assert progress_url.endswith("/remote-sessions/" + host.split(".")[0].removeprefix("s-"))
    # End from the portal: the device tab now gets the relay's ended page
    portal.once("dialog", lambda dialog: dialog.accept())
    portal.get_by_role("button", name="End session").click()
    portal.locator("#rt-status", has_text="ended").wait_for(timeout=30_000)
    tab.bring_to_front()
    for _ in range(30):
        answer = tab.reload()
        if answer is not None and answer.status == 410:
            break
        tab.wait_for_timeout(500)
    assert answer is not None and answer.status == 410
    assert "This Remote Technician session has ended" in tab.content()
    _shot(tab, "04-session-ended")


def test_csp_blocks_fetch_to_the_portal_another_session_and_a_third_origin(
        demo: DemoInfo, context: BrowserContext) -> None:
    a, b = open_session(demo, "absolute"), open_session(demo, "ricoh")
    try:
        page = _device_page_in_tab(context, demo, a)
        page.evaluate("""() => { window.__violations = [];
            document.addEventListener('securitypolicyviolation', e =>
                window.__violations.push([e.blockedURI, e.effectiveDirective])); }""")
        targets = {"portal": f"{demo.portal_url}/api/v1/auth/me",
                   "other session": _origin(b.url) + "/",
                   "third origin": "https://example.com/",
                   "same origin": "/app/api/status.json"}
        results: dict[str, Any] = page.evaluate("""async (targets) => {
            const out = {};
            for (const [name, url] of Object.entries(targets)) {
                try { const r = await fetch(url, {credentials: 'include'});
                      out[name] = 'status ' + r.status; }
                catch (e) { out[name] = 'blocked: ' + e; }
            }
            return out; }""", targets)
        assert results["same origin"] == "status 200", results
        for name in ("portal", "other session", "third origin"):
            assert results[name].startswith("blocked"), results
        page.wait_for_function("() => window.__violations.length >= 3")
        violations = page.evaluate("() => window.__violations")
        blocked = {uri for uri, directive in violations if directive == "connect-src"}
        for name in ("portal", "other session", "third origin"):
            assert any(uri.startswith(_origin(targets[name])) for uri in blocked), violations
        _shot(page, "05-csp-fetch-blocked")
    finally:
        _end(demo, a)
        _end(demo, b)


class _AttackerHandler(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        body = (f"<!doctype html><title>attacker</title><form id=f method=post "
                f"action='{self.target}'><input name=device_name value=pwned></form>"
                "<script>document.getElementById('f').submit()</script>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_cross_site_form_post_from_another_origin_is_refused(
        demo: DemoInfo, context: BrowserContext) -> None:
    """An HTTPS page on ``evil.rt.localhost`` (same *site* as every session host, so the
    browser does send the SameSite=Lax session cookie) auto-submits a form to the session."""
    opened = open_session(demo, "absolute")
    authority = trustme.CA()
    cert = authority.issue_cert("evil.rt.localhost")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AttackerHandler)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(tls)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    _AttackerHandler.target = _origin(opened.url) + "/app/settings"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = _device_page_in_tab(context, demo, opened)
        cookies = {c["name"]: c for c in context.cookies(opened.url)}
        assert "__Host-ewsgate_rt" in cookies
        seen: list[tuple[str, int, dict[str, str]]] = []
        page.on("response", lambda r: seen.append((r.url, r.status, r.request.headers))
                if r.request.method == "POST" else None)
        page.goto(f"https://evil.rt.localhost:{server.server_address[1]}/")
        page.wait_for_url(_AttackerHandler.target)
        page.wait_for_load_state("load")
        posts = [s for s in seen if s[0] == _AttackerHandler.target]
        assert posts and posts[-1][1] == 403, seen
        assert "refused" in page.content().lower()
        # the relay recorded why: the browser marked the POST same-site and sent the cookie
        entries: list[dict[str, Any]] = []
        for _ in range(100):
            entries = opened.client.get(
                f"{demo.api_url}/jobs/{opened.session['job_id']}/log").json()["entries"]
            if any(e["method"] == "POST" for e in entries):
                break
            page.wait_for_timeout(200)
        post = next(e for e in entries if e["method"] == "POST")
        assert (post["status"], post["outcome"]) == (403, "refused"), post
        assert post["user_email"] == demo.logins["technician"]["email"], post
        _shot(page, "06-cross-site-post-refused")
    finally:
        server.shutdown()
        server.server_close()
        _end(demo, opened)


def test_device_domain_cookie_stays_host_only_in_the_browser(
        demo: DemoInfo, context: BrowserContext) -> None:
    opened = open_session(demo, "absolute")
    try:
        _device_page_in_tab(context, demo, opened)
        host = urlsplit(opened.url).hostname
        # the device's rtlang, held in this session's namespace (docs/relay.md)
        rtlang = f"{DeviceCookies(opened.id).prefix}{b'/app'.hex()}.rtlang"
        cookies = [c for c in context.cookies() if c["name"] == rtlang]
        assert cookies, context.cookies()
        # host-only: Chromium reports the host without a leading dot, and only for this host
        assert all(c["domain"] == host for c in cookies), cookies
        assert not [c for c in context.cookies() if c["name"].endswith(".rtlang")
                    and c["domain"] != host], context.cookies()
        assert not [c for c in context.cookies() if c["name"] == "rtlang"]
        # and the browser never sends it to another session's host
        port = urlsplit(opened.url).port
        for elsewhere in (f"https://s-{'b' * 32}.rt.localhost:{port}/app/",
                          f"https://rt.localhost:{port}/app/", f"{demo.portal_url}/app/"):
            assert not [c for c in context.cookies(elsewhere) if c["name"].endswith(".rtlang")]
    finally:
        _end(demo, opened)
