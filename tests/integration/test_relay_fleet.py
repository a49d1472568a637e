"""Two relay nodes registered with one portal, as real processes: ``kill -9`` one and its
live sessions go ``failed`` with the reason within the heartbeat timeout while new sessions go
to the other; ``SIGTERM`` one and it drains: no new session is placed on it, its live session
keeps working until the drain deadline, then the browser gets the clear *ended* page.

The portal is this application on loopback (real uvicorn, real relay API), the relays and the
simulated printer are ``ewsgate`` processes, the agent's real OpenSession handler opens real
tunnels (TLS 1.3, client certificate, the portal's ticket); only the gRPC control stream is a
direct call (the control channel has its own tests). The portal's heartbeat timeout is set to
4 s (interval 1 s) so the test stays short; the relays adopt the interval from its answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.serialization import Encoding

from ewsgate.agent.dialer import ALLOW_LOOPBACK_FOR_TESTS, DialPolicy
from ewsgate.agent.session_commands import session_handlers
from ewsgate.agent.tunnel_client import TunnelClient, TunnelClientConfig
from ewsgate.pki import create_ca, key_to_pem
from ewsgate.portal.app import create_app
from ewsgate.portal.auth import login
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.services.relays import register_relay
from ewsgate.portal.services.users import issue_api_token
from ewsgate.portal.sessions.relay_health import RelayHealthConfig
from ewsgate.portal.store.models import Device, Installation, Relay
from ewsgate.relay.portal_certificate import fetch_relay_certificates
from ewsgate.revocations import cert_thumbprint
from sessions.rt_http import FakeControlServer
from sessions.rt_world import (
    PASSWORD,
    RtWorld,
    rt,
    rt_database_url,
    rt_pg_schema_url,
    rt_sqlite_template,
)
from sessions.test_end_to_end import MAC, AgentShim, _browser, _free_port, _process, _stop, _until

__all__ = ["rt", "rt_database_url", "rt_pg_schema_url", "rt_sqlite_template"]

pytestmark = [pytest.mark.integration, pytest.mark.db]

HEARTBEAT = RelayHealthConfig(interval=1.0, timeout=4.0)
DRAIN_SECONDS = 4.0


@pytest.fixture
async def fleet(rt: RtWorld, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    processes: dict[str, asyncio.subprocess.Process] = {}
    # one technician opens several sessions on one device here (placement, not quotas)
    await rt.set_policy(max_sessions_per_device=8, max_sessions_per_user_per_device=8)
    now = dt.datetime.now(dt.UTC)
    ca = create_ca(now=now)
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    issued = ca.issue_installation_cert(rt.installation, now=now)
    (agent_dir / "cert.pem").write_bytes(issued.cert_pem)
    (agent_dir / "key.pem").write_bytes(key_to_pem(issued.key))
    (agent_dir / "ca.pem").write_bytes(ca.cert_pem)
    async with rt.db.transaction() as s:
        installation = await s.get(Installation, rt.installation)
        assert installation is not None
        installation.cert_thumbprint = cert_thumbprint(issued.cert.public_bytes(Encoding.DER))
    tunnels = TunnelClient(TunnelClientConfig(
        cert_file=agent_dir / "cert.pem", key_file=agent_dir / "key.pem",
        relay_ca_file=agent_dir / "ca.pem",
        dial_policy=DialPolicy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    portal_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(PortalConfig(data_dir=tmp_path / "portal", database_url=rt.db.url,
                                  public_url=portal_url),
                     database=rt.db,
                     background=[FakeControlServer(AgentShim(session_handlers(
                         tunnels, address_policy=tunnels.config.dial_policy.address_policy)),
                         ca)])
    app.state.ewsgate_rt.sessions.relay_health = HEARTBEAT
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _until(lambda: asyncio.sleep(0, server.started), 10)
        http_port, snmp_port = _free_port(), _free_port(socket.SOCK_DGRAM)
        processes["devicesim"] = await _process(
            "devicesim", "--profile", "hp", "--http", f"127.0.0.1:{http_port}",
            "--snmp", f"127.0.0.1:{snmp_port}", "--mac", MAC, "--serial", "CNBRM5K0QZ",
            ready_port=http_port, log=tmp_path / "devicesim.log")
        relays: dict[str, dict[str, Any]] = {}
        async with rt.db.transaction() as s:
            for relay in (await s.scalars(Relay.__table__.select())).all():
                await s.delete(await s.get(Relay, relay))
            for name, domain in (("relay-a", "rt.localhost"), ("relay-b", "rtb.localhost")):
                port, tunnel_port = _free_port(), _free_port()
                registered = await register_relay(
                    s, name=name, public_domain=domain, public_port=port,
                    tunnel_address=f"127.0.0.1:{tunnel_port}")
                relays[name] = {"id": registered.relay.id, "secret": registered.secret,
                                "port": port, "tunnel_port": tunnel_port, "domain": domain}
            device = await s.get(Device, rt.device["on"])
            assert device is not None
            device.ip, device.snmp_port = "127.0.0.1", snmp_port
            device.ews_endpoints = [{"scheme": "http", "port": http_port}]
            token = (await issue_api_token(s, rt.users["tech"], "fleet")).token
        for name, relay in relays.items():
            relay_dir = tmp_path / name
            await fetch_relay_certificates(portal_url, str(relay["id"]), relay["secret"],
                                           relay_dir)
            relay["ca_pem"] = relay_dir / "ca.pem"
            processes[name] = await _process(
                "relay", "--listen", f"127.0.0.1:{relay['port']}",
                "--tunnel-listen", f"127.0.0.1:{relay['tunnel_port']}",
                "--domain", relay["domain"], "--portal-url", portal_url,
                "--data-dir", str(relay_dir), "--relay-id", str(relay["id"]),
                "--relay-secret", relay["secret"], "--drain-timeout", f"{DRAIN_SECONDS:g}s",
                ready_port=relay["port"], log=tmp_path / f"{name}.log")
        ctx = app.state.portal
        async with rt.db.transaction() as s:
            signed_in = await login(s, rt.emails["tech"], PASSWORD, settings=ctx.config.auth,
                                    limiter=ctx.login_limiter)

        async def both_beating() -> bool:
            async with rt.db.transaction() as s:
                rows = (await s.scalars(Relay.__table__.select())).all()
                beats = [await s.get(Relay, r) for r in rows]
            return all(r is not None and r.heartbeat_at is not None for r in beats)

        await _until(both_beating, 20)
        yield {"portal_url": portal_url, "token": token, "relays": relays,
               "processes": processes, "tmp": tmp_path,
               "portal_cookie": (ctx.config.auth.cookie_name, signed_in.cookie_value)}
    finally:
        await tunnels.close()
        for process in processes.values():
            if process.returncode is None:
                process.kill()
            await _stop(process)
        server.should_exit = True
        await asyncio.wait_for(serving, 20)
        sock.close()


async def _open(api: httpx.AsyncClient, device_id: int) -> dict[str, Any]:
    started = await api.post(f"/devices/{device_id}/remote-sessions")
    assert started.status_code == 201, started.text
    sid = started.json()["session_id"]

    async def ready() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/remote-sessions/{sid}")).json()
        assert body["status"] != "failed", body
        return body if body["status"] == "ready" else None

    session: dict[str, Any] = await _until(ready, 30)
    return session


def _on(session: dict[str, Any], relay: dict[str, Any]) -> bool:
    return f".{relay['domain']}:{relay['port']}/" in session["url"]


async def test_a_killed_relay_fails_its_sessions_and_new_ones_go_to_the_other(
        rt: RtWorld, fleet: dict[str, Any]) -> None:
    a, b = fleet["relays"]["relay-a"], fleet["relays"]["relay-b"]
    async with httpx.AsyncClient(base_url=fleet["portal_url"] + "/api/v1", timeout=20,
                                 headers={"Authorization": f"Bearer {fleet['token']}"}) as api:
        first = await _open(api, rt.device["on"])
        second = await _open(api, rt.device["on"])
        assert _on(first, a) and _on(second, b), (first["url"], second["url"])
        loop = asyncio.get_running_loop()
        fleet["processes"]["relay-b"].send_signal(signal.SIGKILL)
        killed_at = loop.time()

        async def failed() -> dict[str, Any] | None:
            body: dict[str, Any] = (
                await api.get(f"/remote-sessions/{second['session_id']}")).json()
            return body if body["status"] == "failed" else None

        lost = await _until(failed, HEARTBEAT.timeout + 10)
        took = loop.time() - killed_at
        assert took <= HEARTBEAT.timeout + 3, f"failed only after {took:.1f} s"
        assert lost["reason"].startswith("relay_lost: relay 'relay-b'"), lost["reason"]
        job = (await api.get(f"/jobs/{second['job_id']}")).json()
        assert job["status"] == "failed" and "relay_lost" in (job.get("error") or ""), job
        assert (await api.get(f"/remote-sessions/{first['session_id']}")).json()["status"] \
            == "ready"
        third = await _open(api, rt.device["on"])
        assert _on(third, a), third["url"]
        print(f"kill -9 of relay-b: its session failed after {took:.1f} s "
              f"(heartbeat timeout {HEARTBEAT.timeout:g} s)")


async def test_sigterm_drains_a_relay_and_its_session_ends_with_the_clear_page(
        rt: RtWorld, fleet: dict[str, Any]) -> None:
    a, b = fleet["relays"]["relay-a"], fleet["relays"]["relay-b"]
    async with httpx.AsyncClient(base_url=fleet["portal_url"] + "/api/v1", timeout=20,
                                 headers={"Authorization": f"Bearer {fleet['token']}"}) as api:
        first = await _open(api, rt.device["on"])
        second = await _open(api, rt.device["on"])
        assert _on(first, a) and _on(second, b)
        browser = _browser(b["ca_pem"])
        name, value = fleet["portal_cookie"]
        browser.cookies.set(name, value, domain="127.0.0.1")
        async with browser:
            page = await browser.get(second["url"])
            assert page.status_code == 200, page.text[:300]
            loop = asyncio.get_running_loop()
            fleet["processes"]["relay-b"].send_signal(signal.SIGTERM)
            term_at = loop.time()

            async def draining() -> bool:
                async with rt.db.transaction() as s:
                    relay = await s.get(Relay, b["id"])
                    return relay is not None and relay.relay_state == "draining"

            await _until(draining, 5)
            third = await _open(api, rt.device["on"])  # relay-b has fewer, but is draining
            assert _on(third, a), third["url"]
            during = await browser.get(second["url"])
            assert during.status_code == 200  # the live session runs on while draining
            statuses: list[int] = []
            while True:
                assert loop.time() - term_at < DRAIN_SECONDS + 5, statuses
                try:
                    answer = await browser.get(second["url"])
                    statuses.append(answer.status_code)
                except httpx.HTTPError:
                    statuses.append(0)  # the connection was cut at the deadline
                    continue
                if answer.status_code == 410:
                    break
                await asyncio.sleep(0.2)
            ended_after = loop.time() - term_at
            assert ended_after >= DRAIN_SECONDS - 0.5, ended_after
            assert "session has ended" in answer.text
        await asyncio.wait_for(fleet["processes"]["relay-b"].wait(), 15)
        assert fleet["processes"]["relay-b"].returncode == 0

        async def ended() -> dict[str, Any] | None:
            body: dict[str, Any] = (
                await api.get(f"/remote-sessions/{second['session_id']}")).json()
            return body if body["status"] == "ended" else None

        done = await _until(ended, 10)
        assert done["reason"].startswith("relay_drained: relay 'relay-b'"), done["reason"]
        assert (await api.get(f"/remote-sessions/{first['session_id']}")).json()["status"] \
            == "ready"
        print(f"SIGTERM drain of relay-b: the clear page after {ended_after:.1f} s "
              f"(drain deadline {DRAIN_SECONDS:g} s)")
