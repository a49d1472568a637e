"""Revocation the relay obeys, end to end with real processes, while the agent ignores it.

The portal (this application on loopback), ``ewsgate relay`` and ``ewsgate devicesim`` are real
processes, the agent's real OpenSession handler opens a real tunnel (TLS 1.3, its client
certificate, the portal's ticket bound to that certificate). The agent is hand-driven and
hostile: it acknowledges ``CloseSession`` without doing anything, and then tries to reconnect
its tunnel with the same ticket. The relay must stop serving the session within 2 s of *End*
on its own, from the portal's revocation stream: a replayed session cookie gets the *ended*
page, not 200, and the reconnecting tunnel is refused.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ewsgate.agent.tunnel_client import TunnelSession
from ewsgate.aio.errors import TunnelError
from ewsgate.relay.browser_auth import SESSION_COOKIE
from sessions.rt_world import RtWorld, rt, rt_database_url, rt_pg_schema_url, rt_sqlite_template
from sessions.test_end_to_end import _browser, _until, e2e

__all__ = ["e2e", "rt", "rt_database_url", "rt_pg_schema_url", "rt_sqlite_template"]

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def test_ended_session_stops_at_the_relay_within_2s_though_the_agent_ignores_it(
        rt: RtWorld, e2e: dict[str, Any]) -> None:
    ignored: list[dict[str, Any]] = []

    async def ignore_close(ctx: Any) -> dict[str, Any]:
        ignored.append(ctx.payload)
        return {"closed": True}  # says yes, does nothing

    e2e["agent"].handlers["CloseSession"] = ignore_close
    api = httpx.AsyncClient(base_url=e2e["portal_url"] + "/api/v1", timeout=20,
                            headers={"Authorization": f"Bearer {e2e['token']}"})
    async with api:
        started = await api.post(f"/devices/{rt.device['on']}/remote-sessions")
        assert started.status_code == 201, started.text
        session = started.json()
        sid, url = session["session_id"], session["url"]

        async def ready() -> bool:
            body = (await api.get(f"/remote-sessions/{sid}")).json()
            assert body["status"] != "failed", body
            return body["status"] == "ready"

        await _until(ready, 30)
        browser = _browser(e2e["ca_pem"])
        name, value = e2e["portal_cookie"]
        browser.cookies.set(name, value, domain="127.0.0.1")
        async with browser:
            page = await browser.get(url)
            assert page.status_code == 200, page.text[:300]
            target = str(page.url)  # the device may redirect "/" to its start page
        host = urlsplit(url).hostname
        cookie = browser.cookies.get(SESSION_COOKIE, domain=host)
        assert cookie, "the relay set its session cookie"
        agent_session = e2e["tunnels"].session(sid)
        assert agent_session is not None
        spec, generation = agent_session.spec, agent_session.generation

        async def replay() -> int:
            """The status a replayed cookie gets on a new connection; 0 if the relay cut the
            connection (a request in flight when the session ended)."""
            async with _browser(e2e["ca_pem"]) as thief:
                try:
                    answer = await thief.get(target,
                                             headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
                                             follow_redirects=False)
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    return 0
                assert answer.status_code != 302 or "oauth" not in answer.headers["location"]
                return answer.status_code

        assert await replay() == 200  # the cookie works while the session is live
        loop = asyncio.get_running_loop()
        ended = await api.delete(f"/remote-sessions/{sid}")
        assert ended.status_code == 200 and ended.json()["status"] == "ended"
        at = loop.time()
        statuses = []
        while (status := await replay()) != 410:
            statuses.append(status)
            assert status in (200, 0), status
            assert loop.time() - at < 2.0, f"still served {len(statuses)} times after End"
            await asyncio.sleep(0.05)
        stopped_after = loop.time() - at
        assert stopped_after < 2.0
        # the agent was told, and ignored it: the relay did not depend on it
        await _until(lambda: asyncio.sleep(0, bool(ignored)), 15)
        assert ignored[0]["session_id"] == sid
        # the hostile agent reconnects with the same ticket and a higher generation
        hostile = TunnelSession(e2e["tunnels"], spec)
        hostile.generation = generation + 1
        with pytest.raises(TunnelError) as refused:
            await hostile._connect()
        if hostile.connection is not None:
            hostile.connection.close()
        assert "refused" in refused.value.message
        assert "ended" in refused.value.message
        print(f"relay stopped serving {stopped_after * 1000:.0f} ms after End "
              f"(before that: {statuses.count(200)} replays answered 200, "
              f"{statuses.count(0)} cut)")
