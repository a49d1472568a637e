"""Open device web page, end to end over real sockets: the portal (this application, served by
uvicorn on loopback), ``ewsgate relay`` and ``ewsgate devicesim`` as real processes, the agent's
real OpenSession handler with its real identity check (SNMP to the simulator) and real tunnel
client (TLS 1.3, client certificate from the portal's CA, the portal's ticket), and an HTTP
client that follows the OAuth redirects like a browser. Only the gRPC control stream is
replaced — by a direct call of the agent's handlers (the control channel has its own tests) —
and the agent may dial loopback (the simulator), which production forbids.

What it shows: API → verifying → ready; the relay's sign-in through the portal's authorization
server; the simulated printer's page through relay, tunnel and agent; every request in the job's
Remote Technician Log; DELETE → CloseSession → the relay's *ended* page.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.serialization import Encoding

from ewsgate.agent.control_client import CommandContext
from ewsgate.agent.dialer import ALLOW_LOOPBACK_FOR_TESTS, DialPolicy
from ewsgate.agent.session_commands import session_handlers
from ewsgate.agent.tunnel_client import TunnelClient, TunnelClientConfig
from ewsgate.pki import create_ca, key_to_pem
from ewsgate.portal.app import create_app
from ewsgate.portal.auth import login
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.control.hub import Progress
from ewsgate.portal.services.relays import register_relay
from ewsgate.portal.services.users import issue_api_token
from ewsgate.portal.store.models import Device, Installation, Relay
from ewsgate.relay.portal_certificate import fetch_relay_certificates
from ewsgate.revocations import cert_thumbprint
from sessions.rt_http import FakeControlServer
from sessions.rt_world import PASSWORD, RtWorld

pytestmark = [pytest.mark.integration, pytest.mark.db]

MAC = "00:1b:a9:00:00:01"


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AgentShim:
    """The portal's hub, delivering commands straight to the agent's handlers."""

    def __init__(self, handlers: dict[str, Any]) -> None:
        self.handlers = handlers

    async def send_command(self, installation_id: int, kind: str, payload: Any = None, *,
                           timeout: float = 30.0, on_progress: Any = None) -> dict[str, Any]:
        pending: list[Any] = []

        def progress(stage: str, detail: str) -> None:
            if on_progress is not None:
                outcome = on_progress(Progress("e2e", stage, detail))
                if asyncio.iscoroutine(outcome):
                    pending.append(asyncio.ensure_future(outcome))

        ctx = CommandContext(id="e2e", kind=kind, payload=dict(payload or {}),
                             deadline=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=timeout),
                             progress=progress)
        try:
            return await asyncio.wait_for(self.handlers[kind](ctx), timeout)
        finally:
            for task in pending:
                await task


class LoopbackBackend(httpcore.AsyncNetworkBackend):
    """Resolves every host to 127.0.0.1 (``*.rt.localhost`` has no DNS here), keeping the
    name for TLS (SNI and certificate checks)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        return await self._inner.connect_tcp("127.0.0.1", port, timeout=timeout,
                                              local_address=local_address,
                                              socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> Any:  # pragma: no cover
        raise OSError("not used")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _browser(ca_pem: Path) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(ca_pem))
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(ssl_context=context,
                                                   network_backend=LoopbackBackend())
    return httpx.AsyncClient(transport=transport, follow_redirects=True, timeout=20)


async def _process(*args: str, ready_port: int, udp: bool = False,
                   log: Path) -> asyncio.subprocess.Process:
    out = log.open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ewsgate", *args, stdout=out, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out.close()
    for _ in range(200):
        if process.returncode is not None:
            break
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", ready_port)
            writer.close()
            return process
        await asyncio.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()
    raise AssertionError(f"ewsgate {args[0]} did not start:\n{log.read_text()[-3000:]}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture
async def e2e(rt: RtWorld, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    processes: list[asyncio.subprocess.Process] = []
    now = dt.datetime.now(dt.UTC)
    ca = create_ca(now=now)
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    issued = ca.issue_installation_cert(rt.installation, now=now)
    (agent_dir / "cert.pem").write_bytes(issued.cert_pem)
    (agent_dir / "key.pem").write_bytes(key_to_pem(issued.key))
    (agent_dir / "ca.pem").write_bytes(ca.cert_pem)
    async with rt.db.transaction() as s:  # what enrolment records: tickets are bound to it
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
                     background=[FakeControlServer(shim := AgentShim(session_handlers(
                         tunnels, address_policy=tunnels.config.dial_policy.address_policy)),
                         ca)])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        http_port, snmp_port = _free_port(), _free_port(socket.SOCK_DGRAM)
        processes.append(await _process(
            "devicesim", "--profile", "hp", "--http", f"127.0.0.1:{http_port}",
            "--snmp", f"127.0.0.1:{snmp_port}", "--mac", MAC, "--serial", "CNBRM5K0QZ",
            ready_port=http_port, log=tmp_path / "devicesim.log"))
        relay_port, tunnel_port = _free_port(), _free_port()
        async with rt.db.transaction() as s:
            for relay in (await s.scalars(Relay.__table__.select())).all():
                await s.delete(await s.get(Relay, relay))
            registered = await register_relay(
                s, name="relay-e2e", public_domain="rt.localhost", public_port=relay_port,
                tunnel_address=f"127.0.0.1:{tunnel_port}")
            device = await s.get(Device, rt.device["on"])
            device.ip, device.snmp_port = "127.0.0.1", snmp_port
            device.ews_endpoints = [{"scheme": "http", "port": http_port}]
            relay_id, secret = str(registered.relay.id), registered.secret
            token = (await issue_api_token(s, rt.users["tech"], "e2e")).token
        relay_dir = tmp_path / "relay"
        await fetch_relay_certificates(portal_url, relay_id, secret, relay_dir)
        processes.append(await _process(
            "relay", "--listen", f"127.0.0.1:{relay_port}",
            "--tunnel-listen", f"127.0.0.1:{tunnel_port}", "--domain", "rt.localhost",
            "--portal-url", portal_url, "--data-dir", str(relay_dir), "--relay-id", relay_id,
            "--relay-secret", secret, "--drain-timeout", "0",  # teardown stops it at once
            ready_port=relay_port, log=tmp_path / "relay.log"))
        ctx = app.state.portal
        async with rt.db.transaction() as s:
            signed_in = await login(s, rt.emails["tech"], PASSWORD, settings=ctx.config.auth,
                                    limiter=ctx.login_limiter)
        yield {"portal_url": portal_url, "token": token, "ca_pem": relay_dir / "ca.pem",
               "portal_cookie": (ctx.config.auth.cookie_name, signed_in.cookie_value),
               "tmp": tmp_path, "agent": shim, "tunnels": tunnels}
    finally:
        await tunnels.close()
        for process in processes:
            await _stop(process)
        server.should_exit = True
        await asyncio.wait_for(serving, 20)
        sock.close()


async def _until(check: Any, seconds: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.2)


async def test_open_device_web_page_end_to_end(rt: RtWorld, e2e: dict[str, Any]) -> None:
    api = httpx.AsyncClient(base_url=e2e["portal_url"] + "/api/v1", timeout=20,
                            headers={"Authorization": f"Bearer {e2e['token']}"})
    async with api:
        started = await api.post(f"/devices/{rt.device['on']}/remote-sessions")
        assert started.status_code == 201, started.text
        session = started.json()
        sid = session["session_id"]

        async def status() -> str | None:
            body = (await api.get(f"/remote-sessions/{sid}")).json()
            assert body["status"] != "failed", body
            return body["status"] if body["status"] == "ready" else None

        await _until(status, 30)

        browser = _browser(e2e["ca_pem"])
        name, value = e2e["portal_cookie"]
        browser.cookies.set(name, value, domain="127.0.0.1")
        async with browser:
            page = await browser.get(session["url"])
            hops = [str(r.url).split("?")[0] for r in page.history]
            # relay → portal (sign-in) → relay callback → the page first asked for; the
            # simulated printer may then redirect within its own pages (rewritten by the relay)
            assert hops[:3] == [session["url"], e2e["portal_url"] + "/oauth/authorize",
                                session["url"] + ".ewsgate/callback"], hops
            assert all(h.startswith(session["url"]) for h in hops[3:]), hops
            assert page.status_code == 200, page.text[:500]
            assert str(page.url).startswith(session["url"])
            assert "<html" in page.text.lower()
            assert "content-security-policy" in page.headers
            again = await browser.get(session["url"])
            assert again.status_code == 200
            assert all(str(r.url).startswith(session["url"]) for r in again.history), \
                "signed in: no second trip to the portal"

            async def logged() -> list[dict[str, Any]] | None:
                entries = (await api.get(f"/jobs/{session['job_id']}/log")).json()["entries"]
                return entries if len(entries) >= 4 else None

            entries = await _until(logged, 30)
            assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
            assert entries[0]["outcome"] == "auth" and entries[1]["outcome"] == "auth"
            oks = [e for e in entries if e["outcome"] == "ok"]
            assert oks and oks[0]["user_email"] == "tech@example.com"
            assert any(e["status"] == 200 and e["bytes_out"] > 0 and e["method"] == "GET"
                       for e in oks), oks

            ended = await api.delete(f"/remote-sessions/{sid}")
            assert ended.json()["status"] == "ended"

            async def closed() -> bool:
                try:
                    answer = await browser.get(session["url"])
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    return False  # the relay cut the ended session's kept-alive connection
                return answer.status_code == 410

            await _until(closed, 20)
        job = (await api.get(f"/jobs/{session['job_id']}")).json()
        assert job["status"] == "completed"
