"""Real processes: a rogue host that answers SNMPv2c with the recorded serial is refused once
the device is pinned. ``ewsgate portal`` and ``ewsgate agent run`` run as processes; the
printer is a simulated SNMP agent plus an HTTPS web server with its own self-signed
certificate, on 127.0.0.1. The first *Verify identity* pins the certificate; then another
host takes over the address (a new SNMP responder with the same serial, another web server
certificate on the same port): refused, with expected and found in the sentence, recorded in
the pin history; after an Administrator resets the pins the new certificate is learned."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ewsgate import pki
from ewsgate.config import HostPort
from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, SnmpAgentHandle, serve_snmp

from .test_portal_process import ewsgate, until
from .test_restart import Processes, free_port

pytestmark = pytest.mark.integration
SERIAL = "CNBRM5K0QZ"


async def _web_server(tmp: Path, name: str, port: int) -> tuple[asyncio.Server, str]:
    now = dt.datetime.now(dt.UTC)
    issued = pki.create_ca(f"printer {name}", now=now).issue_server_cert(
        ip_addresses=["127.0.0.1"], now=now)
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert.write_bytes(pki.cert_to_pem(issued.cert))
    key.write_bytes(pki.key_to_pem(issued.key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    async def handle(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=ctx, reuse_address=True)
    return server, hashlib.sha256(issued.cert.public_bytes(Encoding.DER)).hexdigest()


async def _snmp(port: int, mac: str) -> SnmpAgentHandle:
    return await serve_snmp(SnmpAgentConfig(listen=HostPort("127.0.0.1", port), profile="hp",
                                            serial=SERIAL, mac=mac))


async def test_a_rogue_with_the_right_serial_is_refused_once_the_device_is_pinned(tmp_path):
    data = tmp_path / "portal"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EWSGATE_") and k.lower() not in ("https_proxy", "http_proxy")}
    env["EWSGATE_DATA_DIR"] = str(data)
    ewsgate("db", "upgrade", env=env)
    ewsgate("admin", "create-user", "--email", "admin@example.com", "--password",
            "a long test password", "--role", "administrator", env=env)
    token = ewsgate("admin", "create-token", "--email", "admin@example.com",
                    env=env).split()[-1]
    http, grpc_port, enrol_port = free_port(), free_port(), free_port()
    processes = Processes(tmp_path)
    snmp = await _snmp(0, "a0:d3:c1:4a:2b:3c")
    web, genuine = await _web_server(tmp_path, "genuine", 0)
    web_port = web.sockets[0].getsockname()[1]
    try:
        processes.start("portal", env, "-m", "ewsgate", "portal", "--listen",
                        f"127.0.0.1:{http}", "--grpc-listen", f"127.0.0.1:{grpc_port}",
                        "--enrol-listen", f"127.0.0.1:{enrol_port}")
        api = httpx.Client(base_url=f"http://127.0.0.1:{http}/api/v1", timeout=30,
                           headers={"Authorization": f"Bearer {token}"})

        def ready() -> bool:
            try:
                return api.get("/installations").status_code == 200
            except httpx.HTTPError:
                return False

        await until(ready, 60)
        customer = api.post("/customers", json={"name": "Acme"}).json()
        site = api.post("/installations", json={"customer_id": customer["id"],
                                                "name": "HQ"}).json()
        enrolment = api.post(f"/installations/{site['id']}/enrolment-tokens").json()["token"]
        agent_dir = str(tmp_path / "agent")
        enroll = processes.start("enroll", env, "-m", "ewsgate", "agent", "enroll", "--portal",
                                 f"127.0.0.1:{enrol_port}", "--token", enrolment,
                                 "--data-dir", agent_dir)
        assert await asyncio.to_thread(enroll.wait, 60) == 0
        processes.start("agent", env, "-m", "ewsgate.agent.loopback_demo", agent_dir)
        await until(lambda: api.get(f"/installations/{site['id']}").json().get("online"), 30)
        created = api.post("/devices", json={
            "installation_id": site["id"], "name": "MFP", "make": "hp", "ip": "127.0.0.1",
            "serial": SERIAL, "identity_method": "serial", "snmp_port": snmp.address.port,
            "snmp_community": "public", "ews_endpoints": [{"scheme": "https", "port": web_port}]})
        assert created.status_code == 201, created.text
        device = f"/devices/{created.json()['id']}"
        assert created.json()["identity_strength"]["level"] == "pending"

        first = (await asyncio.to_thread(api.post, f"{device}/verify-identity")).json()
        assert first["result"] == "verified", first
        assert first["pins"]["learned"]["ews_cert_sha256"] == genuine
        body = api.get(device).json()
        assert body["identity_pins"]["ews_cert_sha256"] == genuine  # trust on first use
        assert body["identity_strength"]["level"] == "pinned"

        # another host takes over the address: same serial over SNMPv2c, its own web server
        snmp_port = snmp.address.port
        snmp.close()
        await snmp.wait_closed()
        web.close()
        await web.wait_closed()
        snmp = await _snmp(snmp_port, "02:00:00:00:00:66")
        web, rogue = await _web_server(tmp_path, "rogue", web_port)

        refused = (await asyncio.to_thread(api.post, f"{device}/verify-identity")).json()
        assert refused["result"] == "mismatch", refused
        assert refused["code"] == "cert_pin_mismatch"
        assert genuine in refused["detail"] and rogue in refused["detail"]
        assert "Administrator can reset" in refused["detail"]
        assert api.get(device).json()["identity_pins"]["ews_cert_sha256"] == genuine
        history = api.get(f"{device}/identity-pins/events").json()
        assert [e["action"] for e in history] == ["mismatch", "learned"]

        # the Administrator checked the device: reset, and the next check learns again
        assert api.delete(f"{device}/identity-pins").status_code == 200
        again = (await asyncio.to_thread(api.post, f"{device}/verify-identity")).json()
        assert again["result"] == "verified", again
        assert api.get(device).json()["identity_pins"]["ews_cert_sha256"] == rogue
        actions = [e["action"] for e in api.get(f"{device}/identity-pins/events").json()]
        assert actions == ["learned", "reset", "mismatch", "learned"]
    finally:
        snmp.close()
        web.close()
        processes.stop_all()
