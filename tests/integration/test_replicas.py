"""Two real ``ewsgate portal`` processes on one PostgreSQL database and a real nats-server.

The agent holds its control stream on replica B; a technician's request reaches replica A's
REST API and the identity check still runs on the agent (SNMP over UDP to a simulated
printer), through NATS. When the agent goes, replica A answers "offline" — the error the UI
shows — instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from control.conftest import (
    FAST_CLIENT,
    eventually,
    new_installation,
    new_token,
    utc_now,
)
from control.nats_server import running_nats
from control.test_verify_identity import MAC, SERIAL, add_device
from ewsgate import pki
from ewsgate.agent.address_policy import ALLOW_LOOPBACK_FOR_TESTS, AddressPolicy
from ewsgate.agent.commands import default_handlers
from ewsgate.agent.control_client import ControlClient
from ewsgate.agent.enroll import EnrolOptions, enroll
from ewsgate.agent.state import AgentState
from ewsgate.config import HostPort
from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, serve_snmp
from ewsgate.portal.services.access import actor_for
from ewsgate.portal.services.users import create_api_token
from ewsgate.portal.store.db import Database, parse_database_url
from ewsgate.portal.store.keyring import load_or_create_keyring
from ewsgate.portal.store.models import Customer, Installation, RoleAssignment, User

pytestmark = [pytest.mark.integration, pytest.mark.db]

TEST_URL_ENV = "EWSGATE_TEST_DATABASE_URL"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pg(base: str, sql: str) -> None:
    import asyncpg

    url, _ = parse_database_url(base)
    connection = await asyncpg.connect(url.set(drivername="postgresql", query={})
                                       .render_as_string(hide_password=False))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    base = os.environ.get(TEST_URL_ENV)
    if not base:
        pytest.skip("replicas share a PostgreSQL database: set EWSGATE_TEST_DATABASE_URL "
                    "(the CI PostgreSQL leg does)")
    schema = f"rep_{uuid.uuid4().hex[:16]}"
    await _pg(base, f'CREATE SCHEMA "{schema}"')
    url, _ = parse_database_url(base)
    try:
        yield url.update_query_dict({"schema": schema}).render_as_string(hide_password=False)
    finally:
        await _pg(base, f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    with running_nats() as url:
        yield url


class PortalProcess:
    def __init__(self, name: str, url: str, broker: str, data_dir: Path, ca: tuple[Path, Path]):
        self.name = name
        self.http_port, self.grpc_port, self.enrol_port = (_free_port() for _ in range(3))
        self.log = data_dir.parent / f"{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ewsgate", "portal",
             "--listen", f"127.0.0.1:{self.http_port}",
             "--grpc-listen", f"127.0.0.1:{self.grpc_port}",
             "--enrol-listen", f"127.0.0.1:{self.enrol_port}",
             "--data-dir", str(data_dir), "--database-url", url, "--broker-url", broker,
             "--ca-cert", str(ca[0]), "--ca-key", str(ca[1])],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def ready(self) -> None:
        async def up() -> bool:
            assert self.process.poll() is None, self.log.read_text()
            return "ewsgate portal: listening" in self.log.read_text(errors="replace")

        await eventually(up, timeout=60, interval=0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
async def replicas(pg_url: str, nats_url: str,
                   tmp_path: Path) -> AsyncIterator[tuple[PortalProcess, PortalProcess]]:
    ca = pki.create_ca(now=utc_now())
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    (ca_dir / "ca.crt").write_bytes(pki.cert_to_pem(ca.cert))
    (ca_dir / "ca.key").write_bytes(pki.key_to_pem(ca.key))
    (ca_dir / "ca.key").chmod(0o600)
    paths = (ca_dir / "ca.crt", ca_dir / "ca.key")
    started = []
    try:
        # replicas share DATA_DIR/keys (the sealed columns' keys), as in production
        load_or_create_keyring(tmp_path / "a")
        shutil.copytree(tmp_path / "a" / "keys", tmp_path / "b" / "keys")
        for name in ("a", "b"):  # one after the other: the first one migrates the database
            replica = PortalProcess(name, pg_url, nats_url, tmp_path / name, paths)
            started.append(replica)
            await replica.ready()
        yield started[0], started[1]
    finally:
        for replica in started:
            replica.stop()


async def _administrator_token(db: Database, installation_id: int) -> str:
    async with db.transaction() as session:
        installation = await session.get(Installation, installation_id)
        customer = await session.get(Customer, installation.customer_id)
        user = User(dealer_id=customer.dealer_id, email="admin@example.com", name="Admin",
                    password_hash="x", active=True, created_at=utc_now())
        session.add(user)
        await session.flush()
        session.add(RoleAssignment(user_id=user.id, role="administrator",
                                   dealer_id=customer.dealer_id, created_at=utc_now()))
        await session.flush()
        issued = await create_api_token(session, await actor_for(session, user), "test")
    return issued.token


async def test_a_request_on_replica_a_runs_on_the_agent_held_by_replica_b(
        replicas, pg_url: str, tmp_path: Path) -> None:
    a, b = replicas
    db = Database(pg_url, keyring=load_or_create_keyring(tmp_path / "a"))
    printer = await serve_snmp(SnmpAgentConfig(listen=HostPort("127.0.0.1", 0), mac=MAC,
                                               serial=SERIAL))
    agent_task = None
    try:
        ca = pki.load_ca(tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "ca.key")
        installation_id = await new_installation(db)
        token = await new_token(db, ca, installation_id)
        state = AgentState(tmp_path / "agent")
        await enroll(EnrolOptions(portal=HostPort("127.0.0.1", b.enrol_port), token=token,
                                  agent_version="test"), state)
        client = ControlClient(state, default_handlers(None, address_policy=AddressPolicy(
            allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)), FAST_CLIENT, clock=utc_now)
        agent_task = asyncio.create_task(client.run())
        await asyncio.wait_for(client.connected.wait(), 20)
        device_id, _ = await add_device(db, installation_id, printer.address.port)
        bearer = {"Authorization": f"Bearer {await _administrator_token(db, installation_id)}"}
        async with httpx.AsyncClient(base_url=a.base_url, headers=bearer, timeout=40) as http:
            response = await http.post(f"/api/v1/devices/{device_id}/verify-identity")
            assert response.status_code == 200, response.text
            assert response.json()["result"] == "verified"
            assert response.json()["seen_mac"] == MAC

            client.stop()
            await asyncio.wait_for(agent_task, 15)
            agent_task = None

            async def offline() -> bool:
                answer = await http.post(f"/api/v1/devices/{device_id}/verify-identity")
                return (answer.status_code == 503
                        and answer.json()["error"]["code"] == "installation_offline")

            await eventually(offline, timeout=20, interval=0.2)
    finally:
        if agent_task is not None:
            client.stop()
            await asyncio.wait_for(agent_task, 15)
        printer.close()
        await printer.wait_closed()
        await db.dispose()
