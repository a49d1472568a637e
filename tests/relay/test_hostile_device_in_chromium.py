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
    details = {e["detail"] for e in _entries(tmp_path) if e["outcome"] == "refused"}
    assert {"redirect_to_internal_host", "refresh_to_internal_host", "link_to_internal_host",
            "cross_site_navigation", "markup_in_unreadable_coding"} <= details
