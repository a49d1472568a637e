"""In Chromium: one session's device plants cookies (by header, by script around any wrapper,
for the parent domain, under the relay's cookie name, on a WebSocket's 101) and another
session's device — a login page that reads and writes its own cookies in JavaScript — still
works and receives none of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ewsgate.config import HostPort
from ewsgate.devicesim.device import start_device
from ewsgate.devicesim.ews_server import serve_http
from ewsgate.devicesim.profiles.hostile_ws import HostileWebSockets
from ewsgate.devicesim.web import Router

from .helpers import FakePortal, Relay
from .test_in_chromium import _browser

pytestmark = [pytest.mark.integration, pytest.mark.browser]

_WS_PROBE = """async (paths) => {
  const out = {};
  for (const path of paths) {
    out[path] = await new Promise((done) => {
      const ws = new WebSocket('wss://' + location.host + path);
      const seen = [];
      ws.onmessage = (m) => { seen.push(m.data); ws.close(1000); };
      ws.onclose = (e) => done({code: e.code, seen});
    });
  }
  return out;
}"""


async def _json(page, url: str) -> dict:
    await page.goto(url)
    return json.loads(await page.text_content("body"))


async def test_a_hostile_devices_cookies_never_reach_another_session(
        tmp_path: Path, portal: FakePortal, artifacts_dir: Path) -> None:
    router = Router()
    hostile = HostileWebSockets()
    hostile.register(router)
    hostile_server = await serve_http(router.dispatch, "127.0.0.1", 0, scheme="http")
    victim = await start_device("cookiejs", http=HostPort("127.0.0.1", 0))
    try:
        async with Relay(tmp_path, portal) as relay:
            assert victim.http is not None
            sid_a = relay.add_device(hostile_server.port)
            sid_b = relay.add_device(victim.http.port)
            a, b = f"https://{relay.host(sid_a)}", f"https://{relay.host(sid_b)}"
            manager, browser = await _browser()
            try:
                context = await browser.new_context(ignore_https_errors=True)
                page = await context.new_page()
                # session A: the hostile device plants what it can
                await page.goto(f"{a}/hostile/cookies.html")
                await page.wait_for_function(
                    "document.getElementById('planted').textContent === 'done'")
                ws = await page.evaluate(_WS_PROBE, ["/hostile/ws/set-cookie",
                                                     "/hostile/ws/no-accept",
                                                     "/hostile/ws/raw"])
                jar = await context.cookies()
                relay_a = [c for c in jar if c["name"] == "__Host-ewsgate_rt"
                           and c["domain"] == relay.host(sid_a).split(":")[0]]
                # the attack is real: Chromium holds a cookie for the whole relay domain
                wide = [c for c in jar if c["domain"].lstrip(".") == "rt.localhost"]
                assert [c["name"] for c in wide] == ["js_wide"], jar

                # session B: the JavaScript cookie login works through the relay
                await page.goto(f"{b}/")
                await page.wait_for_selector("#login-form", state="visible")
                assert await page.is_hidden("#cookie-error")
                await page.fill("#user", "admin")
                await page.fill("#password", "admin")
                await page.click("#login")
                await page.wait_for_url(f"{b}/app/status.html")
                shown = {key: await page.text_content(f"#{key}")
                         for key in ("who", "lang", "theme", "session-hidden")}
                await page.screenshot(path=str(artifacts_dir / "relay-cookiejs-status.png"))
                # what B's scripts see: B's device names only, not A's parent-domain cookie
                script_view = await page.evaluate("document.cookie")
                received_b = await _json(page, f"{b}/cookies.json")
                await page.goto(f"{b}/logout.html")
                await page.wait_for_selector("#logged-out")
                after_logout = await _json(page, f"{b}/cookies.json")
                received_a = await _json(page, f"{a}/hostile/cookies.json")
                jar = await context.cookies()
            finally:
                await browser.close()
                await manager.__aexit__(None, None, None)
    finally:
        await victim.close()
        await hostile_server.close()
    assert shown == {"who": "admin", "lang": "en", "theme": "blue", "session-hidden": "hidden"}
    assert sorted(script_view.split("; ")) == [
        "cookie_check=1", "ews_lang=en", "ews_theme=blue", "ews_user=admin"], script_view
    # B's device got exactly its own cookies, under its own names; nothing of A's
    assert set(received_b) == {"cookie_check", "ews_user", "ews_lang", "EWSSESSION"}
    assert received_b["ews_user"] == "admin"
    assert "ews_user" not in after_logout and "EWSSESSION" not in after_logout
    # A's device gets back what it set by header (its Domain= dropped: host-only on A) and
    # through the page's document.cookie (namespaced by the shim); a cookie written around the
    # shim (js_wide for the parent domain, js_host) is un-namespaced and reaches no device
    assert set(received_a) == {"hdr_host", "hdr_wide", "js_wrapped_wide"}, received_a
    # the relay's cookie for A was not overwritten, by header, script or 101
    assert relay_a and relay_a[0]["value"].startswith("v1.") and relay_a[0]["httpOnly"]
    assert not any(c["name"] in ("ws_wide", "hdr_wide", "after_switch") for c in jar)
    # every cookie set by a header or through document.cookie is held namespaced and
    # host-only; only the two written around the shim are not (and no device gets them)
    assert {c["name"] for c in jar if not c["name"].startswith("__Host-")} == {
        "js_host", "js_wide"}, jar
    assert all(c["secure"] and c["path"] == "/" and not c["domain"].startswith(".")
               for c in jar if c["name"].startswith("__Host-dev."))
    # the WebSockets: a valid one opened (its 101 stripped), broken ones never opened
    assert ws["/hostile/ws/set-cookie"] == {"code": 1000, "seen": ["hello"]}
    assert ws["/hostile/ws/no-accept"]["code"] == 1006 and not ws["/hostile/ws/no-accept"][
        "seen"]
    assert ws["/hostile/ws/raw"]["seen"] == ["hello"]
