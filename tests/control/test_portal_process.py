"""The real thing end to end: ``ewsgate portal`` (REST API + control server) and
``ewsgate agent enroll`` / ``ewsgate agent run`` as processes; an administrator's token from the
API, the installation online in the API, *Verify identity* against a simulated printer over
real UDP SNMP, and deleting the installation cutting the agent off."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest

from ewsgate.config import HostPort
from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, serve_snmp

from .test_restart import Processes, free_port

pytestmark = pytest.mark.integration

MAC = "a0:d3:c1:4a:2b:3c"


def ewsgate(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "ewsgate", *args], env=env, timeout=120,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"ewsgate {' '.join(args)}:\n{result.stderr}"
    return result.stdout


async def until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout} s")


async def test_portal_process_enrols_an_agent_shows_it_online_and_verifies_a_device(tmp_path):
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
    printer = await serve_snmp(SnmpAgentConfig(listen=HostPort("127.0.0.1", 0), mac=MAC))
    try:
        portal = processes.start("portal", env, "-m", "ewsgate", "portal", "--listen",
                                 f"127.0.0.1:{http}", "--grpc-listen", f"127.0.0.1:{grpc_port}",
                                 "--enrol-listen", f"127.0.0.1:{enrol_port}")
        api = httpx.Client(base_url=f"http://127.0.0.1:{http}/api/v1", timeout=30,
                           headers={"Authorization": f"Bearer {token}"})

        def ready():
            try:
                return api.get("/installations").status_code == 200
            except httpx.HTTPError:
                return False

        await until(ready, 60)
        customer = api.post("/customers", json={"name": "Acme"}).json()
        site = api.post("/installations", json={"customer_id": customer["id"],
                                                "name": "HQ"}).json()
        issued = api.post(f"/installations/{site['id']}/enrolment-tokens")
        assert issued.status_code == 201, issued.text
        enrolment_token = issued.json()["token"]
        assert enrolment_token.startswith("ewse_") and "." in enrolment_token
        agent_dir = str(tmp_path / "agent")
        enroll = processes.start("enroll", env, "-m", "ewsgate", "agent", "enroll", "--portal",
                                 f"127.0.0.1:{enrol_port}", "--token", enrolment_token,
                                 "--data-dir", agent_dir)
        assert await asyncio.to_thread(enroll.wait, 60) == 0
        # the printer is on loopback, which only the one-machine entry point may reach
        processes.start("agent", env, "-m", "ewsgate.agent.loopback_demo", agent_dir)
        await until(lambda: api.get(f"/installations/{site['id']}").json().get("online"), 30)

        device = api.post("/devices", json={
            "installation_id": site["id"], "name": "MFP", "make": "hp", "ip": "127.0.0.1",
            "mac": MAC, "snmp_port": printer.address.port, "snmp_community": "public",
            "ews_endpoints": [{"scheme": "http", "port": 80}]})
        assert device.status_code == 201, device.text
        # the simulated printer answers from this event loop: do not block it
        verified = await asyncio.to_thread(
            api.post, f"/devices/{device.json()['id']}/verify-identity")
        assert verified.status_code == 200, verified.text
        assert verified.json()["result"] == "verified", verified.json()

        assert api.delete(f"/installations/{site['id']}").status_code == 204
        log = tmp_path / "agent.log"
        await until(lambda: "installation_deleted" in log.read_text(), 15)
        assert portal.poll() is None
    finally:
        printer.close()
        processes.stop_all()
