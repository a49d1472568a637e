"""While the relay restarts, a signed-in browser of a live session is told "reconnecting"
(503, Retry-After, the page reloads itself), not "no session here"."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import FakePortal, RawServer, Relay, Seen, device_app

pytestmark = pytest.mark.integration


async def test_a_restarted_relay_tells_a_signed_in_browser_it_is_reconnecting(
        tmp_path: Path, portal: FakePortal) -> None:
    routes = {"/": lambda r, b: (200, [("Content-Type", "text/plain")], b"device home")}
    async with RawServer(device_app(routes, Seen())) as device:
        async with Relay(tmp_path / "before", portal) as before:
            sid = before.add_device(device.port)
            cookie = await before.login(sid)
            assert (await before.fetch(sid, "GET", "/", cookie=cookie)).status == 200
        # the same relay after a restart: same cookie key, no tunnel yet
        async with Relay(tmp_path / "after", portal) as after:
            waiting = await after.fetch(sid, "GET", "/", cookie=cookie)
            anonymous = await after.fetch(sid, "GET", "/")
            forged = await after.fetch(sid, "GET", "/", cookie=cookie[:-4] + "AAAA")
            portal.session_state[sid] = {"live": False}
            ended = await after.fetch(sid, "GET", "/", cookie=cookie)
            portal.session_state[sid] = {"live": True}
            after.add_device(device.port, session_id=sid)  # the agent's tunnel is back
            back = await after.fetch(sid, "GET", "/", cookie=cookie)
    assert waiting.status == 503 and waiting.header("retry-after") == "2"
    assert b"Reconnecting" in waiting.body and b'http-equiv="refresh"' in waiting.body
    assert anonymous.status == 404 and b"No Remote Technician session" in anonymous.body
    assert forged.status == 404
    assert ended.status == 404  # the portal says it is over: no false hope
    assert back.status == 200 and back.body == b"device home"
