"""Test scaffolding shared by tests/sessions and tests/oauth: a migrated database, a small
Remote Technician world (dealer, customers, device, relays, users by role), a fake clock, the
signing keys, and a scripted stand-in for the control hub (the agent is outside these tests'
subject; the hub's own tests and the end-to-end tests use the real one)."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ewsgate.portal.control.hub import CommandFailed, Progress
from ewsgate.portal.oauth.keys import SigningKeys
from ewsgate.portal.oauth.server import AuthorizationServer, OAuthConfig
from ewsgate.portal.oauth.tokens import TokenIssuer
from ewsgate.portal.services.access import actor_for
from ewsgate.portal.services.credentials import hash_password
from ewsgate.portal.services.relays import register_relay
from ewsgate.portal.sessions.naming import SessionConfig
from ewsgate.portal.sessions.service import RemoteSessions
from ewsgate.portal.store.db import Database, parse_database_url, upgrade
from ewsgate.portal.store.models import (
    Customer,
    Dealer,
    Device,
    Installation,
    RoleAssignment,
    User,
)

ISSUER = "http://portal.test"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
TEST_URL_ENV = "EWSGATE_TEST_DATABASE_URL"


class FakeClock:
    """An injectable clock that only moves when told."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class SentCommand:
    installation_id: int
    kind: str
    payload: dict[str, Any]


class ScriptedHub:
    """Stands in for ControlHub: records commands; OpenSession follows ``script``.

    ``script`` is a list of steps: ("progress", stage) | ("ok", payload) | ("fail", code, msg)
    | ("wait",) (block until released with :meth:`release`).
    """

    def __init__(self) -> None:
        self.sent: list[SentCommand] = []
        self.script: list[tuple[Any, ...]] = [("progress", "connecting"), ("ok", {})]
        self._release = asyncio.Event()

    def release(self) -> None:
        self._release.set()

    async def send_command(self, installation_id: int, kind: str,
                           payload: Mapping[str, Any] | None = None, *, timeout: float = 30.0,
                           on_progress: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        self.sent.append(SentCommand(installation_id, kind, dict(payload or {})))
        if kind != "OpenSession":
            return {}
        for step in self.script:
            if step[0] == "progress" and on_progress is not None:
                outcome = on_progress(Progress("cmd", step[1], ""))
                if asyncio.iscoroutine(outcome):
                    await outcome
            elif step[0] == "wait":
                await self._release.wait()
            elif step[0] == "fail":
                raise CommandFailed(step[2], code=step[1])
            elif step[0] == "ok":
                return dict(step[1])
        return {}

    def kinds(self) -> list[str]:
        return [c.kind for c in self.sent]


@dataclass
class RtWorld:
    db: Database
    clock: FakeClock
    keys: SigningKeys
    issuer: TokenIssuer
    hub: ScriptedHub
    sessions: RemoteSessions
    oauth: AuthorizationServer
    dealer: int = 0
    customer: dict[str, int] = field(default_factory=dict)
    device: dict[str, int] = field(default_factory=dict)
    installation: int = 0
    users: dict[str, int] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    relays: dict[str, int] = field(default_factory=dict)
    relay_secrets: dict[str, str] = field(default_factory=dict)

    async def actor(self, key: str) -> Any:
        async with self.db.transaction() as s:
            user = await s.get(User, self.users[key])
            assert user is not None
            return await actor_for(s, user)

    async def set_policy(self, customer: str = "A", **settings: Any) -> None:
        """Store ``settings`` as the customer's own policy (its JSON form)."""
        from ewsgate.portal.policy import parse_policy
        from ewsgate.portal.store.models import CustomerPolicy

        async with self.db.transaction() as s:
            row = await s.get(CustomerPolicy, self.customer[customer])
            data = parse_policy(settings).as_json()
            if row is None:
                s.add(CustomerPolicy(customer_id=self.customer[customer], settings=data,
                                     updated_at=T0, updated_by="test"))
            else:
                row.settings = data


async def _pg_execute(base_url: str, sql: str) -> None:
    import asyncpg

    url, _ = parse_database_url(base_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def rt_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rt-template") / "portal.sqlite3"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def rt_pg_schema_url() -> Iterator[str | None]:
    """On the PostgreSQL leg: one migrated schema for the run (tests truncate it)."""
    base = os.environ.get(TEST_URL_ENV)
    if not base:
        yield None
        return
    schema = f"rt_{uuid.uuid4().hex[:16]}"
    asyncio.run(_pg_execute(base, f'CREATE SCHEMA "{schema}"'))
    try:
        url, _ = parse_database_url(base)
        with_schema = url.update_query_dict({"schema": schema}).render_as_string(
            hide_password=False)
        asyncio.run(upgrade(with_schema))
        yield with_schema
    finally:
        asyncio.run(_pg_execute(base, f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def rt_database_url(tmp_path: Path, rt_sqlite_template: Path,
                    rt_pg_schema_url: str | None) -> Iterator[str]:
    """An empty migrated database: a copy of a SQLite template, or the run's PostgreSQL
    schema with every table truncated."""
    if rt_pg_schema_url is None:
        target = tmp_path / "portal.sqlite3"
        shutil.copyfile(rt_sqlite_template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    asyncio.run(_truncate(rt_pg_schema_url))
    yield rt_pg_schema_url


async def _truncate(url: str) -> None:
    db = Database(url, pool=False)
    try:
        async with db.transaction() as s:
            names = [row[0] for row in await s.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'alembic_version'"))]
            if names:
                quoted = ", ".join(f'"{name}"' for name in names)
                await s.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    finally:
        await db.dispose()


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 takes most of a second: once per test run


async def build(db: Database, data_dir: Path, *, max_seconds: int = 1800) -> RtWorld:
    clock = FakeClock()
    keys = SigningKeys.open(data_dir, clock)
    issuer = TokenIssuer(keys, ISSUER, clock)
    hub = ScriptedHub()
    sessions = RemoteSessions(db, hub, issuer, SessionConfig(max_seconds=max_seconds,
                                                             open_timeout_seconds=5), clock)
    oauth = AuthorizationServer(db, issuer, OAuthConfig(issuer=ISSUER), clock)
    world = RtWorld(db, clock, keys, issuer, hub, sessions, oauth)
    pw = _password_hash()
    async with db.transaction() as s:
        dealer = Dealer(name="Dealer", created_at=T0)
        s.add(dealer)
        await s.flush()
        world.dealer = dealer.id
        for name in ("A", "B"):
            customer = Customer(dealer_id=dealer.id, name=f"Customer {name}", created_at=T0)
            s.add(customer)
            await s.flush()
            world.customer[name] = customer.id
        inst = Installation(customer_id=world.customer["A"], name="Site A", enabled=True,
                            online=True, created_at=T0)
        s.add(inst)
        await s.flush()
        world.installation = inst.id
        for key, enabled in (("on", True), ("off", False)):
            device = Device(installation_id=inst.id, name=f"Printer {key}", make="hp",
                            model="LaserJet", ip="192.0.2.10", hostname="printer.lan",
                            mac="00:1b:a9:00:00:01", serial="CNBRM5K0QZ",
                            ews_endpoints=[{"scheme": "http", "port": 80},
                                           {"scheme": "https", "port": 443}],
                            identity_method="mac", snmp_version="2c", snmp_port=161,
                            snmp_community="public", remote_technician_enabled=enabled,
                            created_at=T0, updated_at=T0)
            s.add(device)
            await s.flush()
            world.device[key] = device.id
        for key, role, customer in (("tech", "user", None), ("tech2", "user", None),
                                    ("techB", "user", "B"), ("admin", "administrator", None),
                                    ("adminB", "administrator", "B"),
                                    ("configurer", "configurer", None),
                                    ("viewer", "viewer", None),
                                    ("approverA", "approver", "A"),
                                    ("approverB", "approver", "B"),
                                    ("viewerB", "viewer", "B")):
            user = User(dealer_id=dealer.id, email=f"{key.lower()}@example.com", name=key,
                        password_hash=pw, active=True, created_at=T0)
            s.add(user)
            await s.flush()
            world.users[key], world.emails[key] = user.id, user.email
            s.add(RoleAssignment(user_id=user.id, role=role, dealer_id=dealer.id,
                                 customer_id=world.customer[customer] if customer else None,
                                 created_at=T0))
        for name, domain, port in (("relay-x", "rt.localhost", 8443),
                                   ("relay-y", "rt2.localhost", 443)):
            registered = await register_relay(s, name=name, public_domain=domain,
                                              public_port=port,
                                              tunnel_address="127.0.0.1:8444", clock=clock)
            world.relays[name] = registered.relay.id
            world.relay_secrets[name] = registered.secret
    return world


@pytest.fixture
async def rt(rt_database_url: str, tmp_path: Path) -> AsyncIterator[RtWorld]:
    """The Remote Technician world in this test's own database."""
    db = Database(rt_database_url)
    world = await build(db, tmp_path / "data")
    try:
        yield world
    finally:
        await world.sessions.aclose()
        await db.dispose()


async def settle(world: RtWorld) -> None:
    """Let the background OpenSession / CloseSession tasks run to their end."""
    for _ in range(50):
        tasks = [*world.sessions._tasks.values(), *world.sessions._background]
        if not tasks:
            return
        await asyncio.gather(*tasks, return_exceptions=True)
