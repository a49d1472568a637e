"""The whole data path: browser → relay (TLS) → the agent's tunnel → the simulated printer.

Real processes' parts in one event loop: the relay's tunnel listener and registry, the agent's
tunnel client with its dialer, and ``ewsgate devicesim``'s ``absolute`` profile, which names
itself with absolute ``http://`` and ``ws://`` URLs, sets ``Domain=`` cookies and sends gzip.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ewsgate import pki
from ewsgate.agent.dialer import ALLOW_LOOPBACK_FOR_TESTS, DeviceEndpoint, DeviceTarget, DialPolicy
from ewsgate.agent.tunnel_client import SessionSpec, TunnelClient, TunnelClientConfig
from ewsgate.config import HostPort
from ewsgate.devicesim.device import RunningDevice, start_device
from ewsgate.portal.oauth.keys import SigningKeys
from ewsgate.portal.oauth.tokens import TokenIssuer
from ewsgate.relay.registry import TunnelRegistry
from ewsgate.relay.tickets import StaticKeySource, TicketVerifier
from ewsgate.relay.tunnel_server import TunnelServer, TunnelServerConfig
from ewsgate.revocations import cert_thumbprint

from .helpers import FakePortal, Relay, new_session_id

pytestmark = pytest.mark.integration

ISSUER = "https://portal.test"


@pytest.fixture
async def printer() -> AsyncIterator[RunningDevice]:
    device = await start_device("absolute", http=HostPort("127.0.0.1", 0))
    try:
        yield device
    finally:
        await device.close()


async def _tunnel(tmp: Path, device: RunningDevice, sid: str
                  ) -> tuple[TunnelRegistry, TunnelServer, TunnelClient]:
    now = dt.datetime.now(dt.UTC)
    ca = pki.create_ca(now=now)
    relay_cert = ca.issue_server_cert(ip_addresses=["127.0.0.1"], dns_names=["localhost"],
                                      now=now)
    agent_cert = ca.issue_installation_cert("inst-1", now=now)
    files = {"ca.crt": ca.cert_pem, "relay.crt": pki.cert_to_pem(relay_cert.cert),
             "relay.key": pki.key_to_pem(relay_cert.key),
             "agent.crt": pki.cert_to_pem(agent_cert.cert),
             "agent.key": pki.key_to_pem(agent_cert.key)}
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    keys = SigningKeys.open(tmp / "portal-keys", lambda: dt.datetime.now(dt.UTC))
    issuer = TokenIssuer(keys, ISSUER, lambda: dt.datetime.now(dt.UTC))
    registry = TunnelRegistry()
    server = TunnelServer(
        TunnelServerConfig(cert_file=tmp / "relay.crt", key_file=tmp / "relay.key",
                           client_ca_file=tmp / "ca.crt"),
        TicketVerifier(relay_id="relay-1", portal_url=ISSUER,
                       keys=StaticKeySource(keys.public_key_set())), registry)
    _, port = await server.start()
    assert device.http is not None
    target = DeviceTarget(ip="127.0.0.1", endpoints=(DeviceEndpoint("http", device.http.port),))
    ticket = issuer.tunnel_ticket(
        relay_id="relay-1", installation_id="inst-1", session_id=sid,
        expires_at=now + dt.timedelta(minutes=10),
        device={"ip": "127.0.0.1", "hostname": device.config.hostname,
                "endpoints": [{"scheme": "http", "port": device.http.port}]},
        certificate_thumbprint=cert_thumbprint(agent_cert.cert.public_bytes(Encoding.DER))).token
    client = TunnelClient(TunnelClientConfig(
        cert_file=tmp / "agent.crt", key_file=tmp / "agent.key", relay_ca_file=tmp / "ca.crt",
        dial_policy=DialPolicy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)))
    await client.open_session(SessionSpec(session_id=sid, relay_host="127.0.0.1",
                                          relay_port=port, ticket=ticket, device=target,
                                          expires_at=time.time() + 600))
    await registry.wait_for(sid, within=10)
    return registry, server, client


async def test_device_page_through_the_tunnel_is_rewritten(
        tmp_path: Path, portal: FakePortal, printer: RunningDevice) -> None:
    sid = new_session_id()
    registry, server, client = await _tunnel(tmp_path, printer, sid)
    try:
        async with Relay(tmp_path, portal, directory=registry) as relay:
            origin = f"https://{relay.host(sid)}"
            cookie = await relay.login(sid)
            device_origin = f"http://127.0.0.1:{printer.http.port}"

            first = await relay.fetch(sid, "GET", "/", cookie=cookie)
            assert first.status == 302
            assert first.header("location") == f"{origin}/app/index.html"

            page = await relay.fetch(sid, "GET", "/app/index.html", cookie=cookie)
            assert page.status == 200
            text = page.body.decode()
            assert f"{origin}/app/" in text and device_origin not in text
            assert f"http://{printer.config.hostname}" not in text
            for value in page.all("set-cookie"):
                assert "domain" not in value.lower()
            assert page.header("content-security-policy")

            script = await relay.fetch(sid, "GET", "/app/app.js", cookie=cookie)
            assert f'"wss://{relay.host(sid)}"' in script.body.decode()
            assert "ws://127.0.0.1" not in script.body.decode()

            gz = await relay.fetch(sid, "GET", "/app/gz.html", cookie=cookie)
            assert gz.status == 200 and gz.header("content-encoding") is None
            assert origin.encode() in gz.body and device_origin.encode() not in gz.body

            # the live WebSocket passes through the tunnel
            reader, writer = await relay.connect(sid)
            writer.write((f"GET /app/ws/status HTTP/1.1\r\nHost: {relay.host(sid)}\r\n"
                          f"Cookie: {cookie}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101")
            frame = await asyncio.wait_for(reader.read(2), 10)
            assert frame[0] & 0x0F == 0x1  # a text frame from the device
            writer.close()
    finally:
        await client.close()
        await server.close()


async def test_close_session_closes_open_websockets_with_1008_before_the_tunnel_drops(
        tmp_path: Path, portal: FakePortal, printer: RunningDevice) -> None:
    """Whoever calls ``TunnelRegistry.close_session`` (the portal's revocation, an
    administrator) reaches the browser side: close 1008, sent while the tunnel still carries
    the device's leg."""
    from wsproto.events import CloseConnection, TextMessage

    from .ws_peers import WsClient, upgrade_request

    sid = new_session_id()
    registry, server, client = await _tunnel(tmp_path, printer, sid)
    tunnel_up_when_told: list[bool] = []

    async def observe(session_id: str, reason: str) -> None:
        tunnel_up_when_told.append(registry.lookup(session_id) is not None)

    try:
        async with Relay(tmp_path, portal, directory=registry) as relay:
            registry.add_session_end_listener(observe)
            cookie = await relay.login(sid)
            ws = await WsClient.open(relay, sid, upgrade_request(
                relay, sid, cookie, path="/app/ws/status"))
            try:
                assert ws.head.startswith(b"HTTP/1.1 101")
                assert isinstance(await ws.next_event(), TextMessage)
                closing = asyncio.create_task(
                    registry.close_session(sid, "ended by an administrator"))
                event = await ws.next_event()
                while isinstance(event, TextMessage):
                    event = await ws.next_event()
                assert isinstance(event, CloseConnection) and event.code == 1008
                assert event.reason == "ended by an administrator"
                await ws.send(event.response())
                assert await closing is True
            finally:
                ws.close()
            assert tunnel_up_when_told == [True]
            after = await relay.fetch(sid, "GET", "/", cookie=cookie)
            assert after.status == 410
    finally:
        await client.close()
        await server.close()
