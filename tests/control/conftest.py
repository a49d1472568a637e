"""Fixtures for the control-channel tests: a migrated database, a CA, a running control server
(real grpcio, real TLS on 127.0.0.1, port 0), installations with tokens, enrolled agents.

The database is a temporary SQLite file, or a fresh PostgreSQL schema when
``EWSGATE_TEST_DATABASE_URL`` is set (the CI PostgreSQL leg).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ewsgate import pki
from ewsgate.agent.address_policy import ALLOW_LOOPBACK_FOR_TESTS, AddressPolicy
from ewsgate.agent.commands import default_handlers
from ewsgate.agent.control_client import ClientConfig, ControlClient
from ewsgate.agent.enroll import EnrolOptions, enroll
from ewsgate.agent.state import AgentIdentity, AgentState
from ewsgate.config import HostPort
from ewsgate.portal.control import ControlServer, ControlServerConfig, HubConfig
from ewsgate.portal.services.installations import hash_token
from ewsgate.portal.store.db import Database, parse_database_url
from ewsgate.portal.store.models import Customer, Dealer, EnrolmentToken, Installation

TEST_URL_ENV = "EWSGATE_TEST_DATABASE_URL"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _pg(base_url: str, sql: str) -> None:
    import asyncpg

    url, _ = parse_database_url(base_url)
    connection = await asyncpg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    base = os.environ.get(TEST_URL_ENV)
    schema = None
    if base:
        schema = f"c_{uuid.uuid4().hex[:16]}"
        await _pg(base, f'CREATE SCHEMA "{schema}"')
        url, _ = parse_database_url(base)
        text = url.update_query_dict({"schema": schema}).render_as_string(hide_password=False)
    else:
        text = f"sqlite+aiosqlite:///{tmp_path / 'portal.sqlite3'}"
    database = Database(text)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.dispose()
        if base and schema:
            await _pg(base, f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def ca() -> pki.CertificateAuthority:
    return pki.create_ca(now=utc_now())


FAST_HUB = HubConfig(heartbeat_interval=0.5, missed_heartbeats=3, sweep_interval=0.1,
                     db_sweep_interval=0.2, offline_grace=3.0, stale_after=3.0)


@pytest.fixture
async def portal(db: Database, ca: pki.CertificateAuthority) -> AsyncIterator[ControlServer]:
    server = ControlServer(ControlServerConfig(listen="127.0.0.1:0", enrol_listen="127.0.0.1:0",
                                               hub=FAST_HUB),
                           database=db, ca=ca, clock=utc_now)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0.2)


async def new_installation(db: Database, *, enabled: bool = True) -> int:
    async with db.transaction() as session:
        dealer = Dealer(name="Dealer", created_at=utc_now())
        session.add(dealer)
        await session.flush()
        customer = Customer(dealer_id=dealer.id, parent_id=None, name="Customer",
                            created_at=utc_now())
        session.add(customer)
        await session.flush()
        installation = Installation(customer_id=customer.id, name="Site", enabled=enabled,
                                    online=False, created_at=utc_now())
        session.add(installation)
        await session.flush()
        return installation.id


async def new_token(db: Database, ca: pki.CertificateAuthority, installation_id: int, *,
                    lifetime: dt.timedelta = dt.timedelta(hours=24),
                    purpose: str = "enrol") -> str:
    secret = "ewse_" + uuid.uuid4().hex + uuid.uuid4().hex
    async with db.transaction() as session:
        now = utc_now()
        session.add(EnrolmentToken(installation_id=installation_id, token_hash=hash_token(secret),
                                   created_at=now, expires_at=now + lifetime, purpose=purpose))
    return pki.compose_enrolment_token(secret, ca.cert)


async def get_installation(db: Database, installation_id: int) -> Installation | None:
    async with db.transaction() as session:
        return await session.get(Installation, installation_id)


@dataclass
class Enrolled:
    installation_id: int
    state: AgentState
    identity: AgentIdentity


@pytest.fixture
def enrol(db: Database, ca: pki.CertificateAuthority, portal: ControlServer,
          tmp_path: Path) -> Callable[..., object]:
    async def make(name: str = "agent") -> Enrolled:
        installation_id = await new_installation(db)
        token = await new_token(db, ca, installation_id)
        state = AgentState(tmp_path / name)
        identity = await enroll(EnrolOptions(portal=HostPort("127.0.0.1", portal.enrol_port or 0),
                                             token=token, agent_version="test"), state)
        return Enrolled(installation_id, state, identity)

    return make


FAST_CLIENT = ClientConfig(agent_version="test", backoff_base=0.05, backoff_cap=0.5,
                           connect_timeout=5.0, renew_check_interval=0.2)


class RunningAgent:
    """A ControlClient running as a task; ``stop()`` ends it."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client
        self.task = asyncio.create_task(client.run())

    async def stop(self) -> None:
        self.client.stop()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def agents() -> AsyncIterator[Callable[..., RunningAgent]]:
    running: list[RunningAgent] = []

    def start(state: AgentState, handlers: dict | None = None, config: ClientConfig = FAST_CLIENT,
              clock: Callable[[], dt.datetime] = utc_now,
              on_renewed: Callable[[], None] | None = None,
              address_policy: AddressPolicy | None = None) -> RunningAgent:
        # the simulated printers listen on loopback, which only the test switch allows
        policy = address_policy or AddressPolicy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)
        agent = RunningAgent(ControlClient(state, default_handlers(handlers,
                                                                   address_policy=policy),
                                           config,
                                           clock=clock, on_renewed=on_renewed))
        running.append(agent)
        return agent

    yield start
    for agent in running:
        await agent.stop()


async def eventually(predicate: Callable[[], object], timeout: float = 10.0,
                     interval: float = 0.05) -> None:
    """Wait until ``predicate()`` (sync or async) is truthy; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
