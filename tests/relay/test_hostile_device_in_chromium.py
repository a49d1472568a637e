"""The ``hostile`` device profile through a session in Chromium: every attack refused.

The device (``ewsgate devicesim --profile hostile``) runs in-process on loopback, the relay
over real TLS; the attacks' targets point at a trap listener on 127.0.0.1, so a redirect the
relay let through would show up there as a connection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ewsgate.config import HostPort
from ewsgate.devicesim.device import start_device
from ewsgate.relay.redirects import REFUSED_PATH

from .helpers import FakePortal, RawServer, Relay
from .test_in_chromium import _browser

pytestmark = [pytest.mark.integration, pytest.mark.browser]


#: opens each WebSocket path, sends a plain HTTP request as a text message once open, and
#: closes after the first message back: how each one ended and what it saw
_WS_PROBE = """async (paths) => {
  const out = {};
  for (const path of paths) {
    out[path] = await new Promise((done) => {
      const ws = new WebSocket('wss://' + location.host + path);
      const seen = [];
      ws.onopen = () => ws.send('GET /reboot.cgi?ws=1 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n');
      ws.onmessage = (m) => { seen.push(m.data); ws.close(1000); };
      ws.onclose = (e) => done({code: e.code, seen});
    });
  }
  return out;
}"""
#: every cookie the device tries to plant, by any route
_PLANTED = {"hdr_wide", "hdr_host", "js_wide", "js_host", "js_wrapped_wide", "ws_wide",
            "after_switch"}


async def _json(page: Any, url: str) -> Any:
    await page.goto(url, wait_until="load")
    return json.loads(await page.text_content("body") or "null")


async def _trap(reader: Any, writer: Any) -> None:
    writer.close()


def _entries(tmp_path: Path) -> list[dict[str, Any]]:
    lines = b"".join(p.read_bytes() for p in sorted((tmp_path / "spool").glob("segment-*")))
    return [json.loads(line) for line in lines.splitlines()]


async def test_every_hostile_device_attack_is_refused_in_chromium(
        tmp_path: Path, portal: FakePortal, artifacts_dir: Path) -> None:
    device = await start_device("hostile", http=HostPort("127.0.0.1", 0))
    assert device.http is not None
    try:
        async with RawServer(_trap) as trap, \
                Relay(tmp_path, portal, max_header_bytes=64 * 1024) as relay:
            sid = relay.add_device(device.http.port)
            other = relay.add_device(device.http.port)
            origin, other_origin = (f"https://{relay.host(s)}" for s in (sid, other))
            attacks = device.profile.attacks  # type: ignore[attr-defined]
            manager, browser = await _browser()
            try:
                context = await browser.new_context(ignore_https_errors=True)
                page = await context.new_page()
                await page.goto(origin + "/", wait_until="load")
                assert page.url == origin + "/"
                assert "Each link is an attack" in await page.content()
                outcomes: dict[str, str] = {}
                for attack in attacks:
                    if attack.kind != "navigate" or attack.name == "navigate-other-session":
                        continue
                    response = await page.goto(f"{origin}{attack.path}?port={trap.port}",
                                               wait_until="load")
                    if attack.name.startswith("meta"):
                        await page.wait_for_url(origin + REFUSED_PATH, timeout=10000)
                        assert "redirect was stopped" in await page.content(), attack.name
                    else:
                        assert response is not None and response.status == 502, attack.name
                        assert "relay cannot pass on" in await page.content(), attack.name
                    assert page.url.startswith(origin + "/"), (attack.name, page.url)
                    outcomes[attack.name] = "refused"
                # another session's device page navigates this browser into this session
                await page.goto(other_origin + "/", wait_until="load")
                await page.goto(f"{other_origin}/attack/navigate?to={origin}/reboot.cgi?now=1")
                await page.wait_for_url(f"{origin}/reboot.cgi?now=1", timeout=10000)
                assert "cross_site_navigation" in await page.content()
                await page.screenshot(path=str(artifacts_dir / "relay-hostile-navigation.png"))
                # requests the device's own script sends
                await page.goto(origin + "/attack/requests.html", wait_until="load")
                await page.wait_for_function(
                    "document.getElementById('out').textContent !== 'running'", timeout=15000)
                results = json.loads(await page.text_content("#out") or "{}")
                await page.screenshot(path=str(artifacts_dir / "relay-hostile-requests.png"))
                # the WebSocket and cookie attacks: planted in this session...
                await page.goto(origin + "/hostile/cookies.html", wait_until="load")
                await page.wait_for_function(
                    "document.getElementById('planted').textContent === 'done'", timeout=15000)
                ws_paths = [a.path for a in attacks if a.kind == "websocket"]
                ws = await page.evaluate(_WS_PROBE, ws_paths)
                after_switch = await _json(page, origin + "/hostile/ws/received.json")
                own_received = await _json(page, origin + "/hostile/cookies.json")
                planted_jar = await context.cookies()
                # ...and the other session: its device gets none of it, its page still loads
                other_received = await _json(page, other_origin + "/hostile/cookies.json")
                await page.goto(other_origin + "/", wait_until="load")
                other_still_in = "Each link is an attack" in await page.content()
                # signing out drops this browser's hold on the session
                await page.goto(origin + "/.ewsgate/logout", wait_until="load")
                assert "Signed out" in await page.content()
                cookies = {(c["name"], c["domain"]) for c in await context.cookies()}
            finally:
                await browser.close()
                await manager.__aexit__(None, None, None)
            hits = device.profile.hits  # type: ignore[attr-defined]
            trapped = trap.connections
    finally:
        await device.close()
    expected = {a.name for a in attacks if a.kind == "navigate"} - {"navigate-other-session"}
    assert set(outcomes) == expected and len(expected) == 33
    assert trapped == 0 and hits["/trapped"] == 0 and hits["/reboot.cgi"] == 0
    override = results["override"]
    assert override["status"] == 200
    received = set(override["received"])
    assert "x-kept" in received
    assert not received & {"x-original-url", "x-rewrite-url", "x-client-ip", "true-client-ip",
                           "x-forwarded-host", "x-forwarded-for", "x-http-method-override",
                           "forwarded", "x-real-ip"}
    for name in ("underscore", "ansi", "eight-bit", "encoded-slash", "encoded-backslash"):
        # 400 from the relay (or the browser refusing to send it at all): never the device
        status = results[name]["status"]
        assert status == 400 or str(status).startswith("error"), (name, status)
    assert hits["/echo"] == sum(1 for r in results.values() if r["status"] == 200)
    assert (relay.host(sid).split(":")[0], "__Host-ewsgate_rt") not in {
        (d, n) for n, d in cookies}
    urls = [e["url"] for e in _entries(tmp_path) if e["session_id"] == sid]
    assert any(u.startswith("/echo?user=admin&password=\u2026&access_token=\u2026&community="
                            "\u2026") for u in urls)
    assert not any("hunter2" in u or "private" in u for u in urls)
    long_url = next(u for u in urls if u.startswith("/echo?q=x"))
    assert long_url.endswith(" bytes]") and "\u2026[+" in long_url
    # WebSockets: a 101 that sets cookies opens with them stripped; a 101 without or with a
    # wrong accept, or an extension nobody offered, never opens (502); after a 101 the device
    # got only frames (masked by the relay), never the plain HTTP the page sent
    assert {a.name for a in attacks if a.kind == "websocket"} == {
        "ws-set-cookie", "ws-no-accept", "ws-wrong-accept", "ws-extension", "ws-raw"}
    assert ws["/hostile/ws/set-cookie"] == {"code": 1000, "seen": ["hello"]}, ws
    # (the recording device never answers the browser's close: the relay cuts it after the
    # grace, so the browser's code is 1006 there)
    assert ws["/hostile/ws/raw"]["seen"] == ["hello"], ws
    for path in ("/hostile/ws/no-accept", "/hostile/ws/wrong-accept", "/hostile/ws/extension"):
        assert ws[path] == {"code": 1006, "seen": []}, (path, ws[path])
    raw = after_switch["received"].encode("latin-1")
    assert raw and raw[0] == 0x81 and raw[1] & 0x80, raw[:16]  # a masked text frame
    assert b"HTTP" not in raw and b"reboot" not in raw and b"Host:" not in raw
    switches = [e for e in _entries(tmp_path) if e["session_id"] == sid
                and e["url"].startswith("/hostile/ws/") and e["outcome"] != "pending"]
    assert sorted(e["url"] for e in switches if e["status"] == 502) == [
        "/hostile/ws/extension", "/hostile/ws/no-accept", "/hostile/ws/wrong-accept"]
    assert all(e["detail"].startswith("bad_websocket_switch") for e in switches
               if e["status"] == 502)
    # cookies: this session's device gets back what it set through the relay (namespaced,
    # host-only); the other session's device gets none of it; no relay cookie is shadowed
    assert set(own_received) == {"hdr_host", "hdr_wide", "js_wrapped_wide"}, own_received
    assert not set(other_received) & _PLANTED, other_received
    assert not any(name.startswith("__Host-") for name in other_received), other_received
    assert other_still_in
    relay_cookies = {c["domain"]: c for c in planted_jar if c["name"] == "__Host-ewsgate_rt"}
    for host in (relay.host(sid), relay.host(other)):
        held = relay_cookies[host.split(":")[0]]
        assert held["value"].startswith("v1.") and held["httpOnly"], held
    assert not any(c["name"] in ("ws_wide", "hdr_wide", "after_switch") for c in planted_jar)
    assert {c["name"] for c in planted_jar if not c["name"].startswith("__Host-")} == {
        "js_host", "js_wide"}, planted_jar  # written around the relay's wrapper: no device
    details = {e["detail"] for e in _entries(tmp_path) if e["outcome"] == "refused"}
    assert {"redirect_to_internal_host", "refresh_to_internal_host", "link_to_internal_host",
            "cross_site_navigation", "markup_in_unreadable_coding"} <= details
