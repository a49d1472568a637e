"""Helpers for the portal's tests: the PostgreSQL test database, and a small world of two
dealers, nested customers, one installation, device and finished job per customer, and users
holding each role at two scopes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ewsgate.portal.services.credentials import hash_password
from ewsgate.portal.store.db import Database, parse_database_url
from ewsgate.portal.store.models import (
    Customer,
    Dealer,
    Device,
    Installation,
    Job,
    JobLogEntry,
    RoleAssignment,
    User,
)

__all__ = ["ROLE_NAMES", "TEST_URL_ENV", "WORLD_NOW", "WORLD_PASSWORD", "World", "build_world",
           "pg_base_url", "pg_execute", "with_schema"]

TEST_URL_ENV = "EWSGATE_TEST_DATABASE_URL"


def pg_base_url() -> str | None:
    """The PostgreSQL URL to test against, if the PostgreSQL leg is running."""
    return os.environ.get(TEST_URL_ENV) or None


async def pg_execute(base_url: str, sql: str) -> None:
    import asyncpg

    url, _ = parse_database_url(base_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def with_schema(base_url: str, schema: str) -> str:
    url, _ = parse_database_url(base_url)
    return url.update_query_dict({"schema": schema}).render_as_string(hide_password=False)

WORLD_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WORLD_PASSWORD = "correct horse battery"
ROLE_NAMES = ("administrator", "configurer", "user", "viewer", "approver")


@dataclass
class World:
    """Ids of what :func:`build_world` created. Customers: ``A`` (root) ⊃ ``A1``, ``B`` (root)
    in dealer ``d1``; ``X`` in dealer ``d2``. ``installation[c]``, ``device[c]``, ``job[c]``
    per customer. Users: ``users["administrator@A"]`` (role scoped to A),
    ``users["viewer@dealer"]`` (dealer-wide), ``users["admin2"]`` (dealer d2)..."""

    d1: int = 0
    d2: int = 0
    customer: dict[str, int] = field(default_factory=dict)
    installation: dict[str, int] = field(default_factory=dict)
    device: dict[str, int] = field(default_factory=dict)
    job: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)


async def build_world(database: Database) -> World:
    world = World()
    password_hash = hash_password(WORLD_PASSWORD)
    async with database.transaction() as s:
        d1, d2 = Dealer(name="Dealer One", created_at=WORLD_NOW), Dealer(
            name="Dealer Two", created_at=WORLD_NOW)
        s.add_all([d1, d2])
        await s.flush()
        world.d1, world.d2 = d1.id, d2.id
        for name, dealer, parent in (("A", d1.id, None), ("A1", d1.id, "A"), ("B", d1.id, None),
                                     ("X", d2.id, None)):
            customer = Customer(dealer_id=dealer, name=f"Customer {name}", created_at=WORLD_NOW,
                                parent_id=world.customer[parent] if parent else None)
            s.add(customer)
            await s.flush()
            world.customer[name] = customer.id
            installation = Installation(customer_id=customer.id, name=f"Site {name}",
                                        enabled=True, online=True, created_at=WORLD_NOW)
            s.add(installation)
            await s.flush()
            world.installation[name] = installation.id
            device = Device(installation_id=installation.id, name=f"Printer {name}", make="hp",
                            model="LaserJet", ip="192.0.2.10", mac="00:1b:a9:00:00:01",
                            ews_endpoints=[{"scheme": "https", "port": 443}],
                            identity_method="mac", snmp_version="2c", snmp_port=161,
                            snmp_community="public", remote_technician_enabled=True,
                            created_at=WORLD_NOW, updated_at=WORLD_NOW)
            s.add(device)
            await s.flush()
            world.device[name] = device.id
            job = Job(type="open_device_web_page", status="completed", dealer_id=dealer,
                      customer_id=customer.id, device_id=device.id, device_name=device.name,
                      created_at=WORLD_NOW)
            s.add(job)
            await s.flush()
            world.job[name] = job.id
            s.add(JobLogEntry(job_id=job.id, seq=0, at=WORLD_NOW, method="GET", url="/",
                              status=200, outcome="ok"))
        grants: list[tuple[str, int, str, int | None]] = [("admin", d1.id, "administrator",
                                                           None), ("admin2", d2.id,
                                                                   "administrator", None)]
        for role in ROLE_NAMES:
            grants.append((f"{role}@A", d1.id, role, world.customer["A"]))
            grants.append((f"{role}@dealer", d1.id, role, None))
        grants.append(("nobody", d1.id, "", None))
        for key, dealer, role, customer_id in grants:
            email = f"{key.replace('@', '.')}@example.com".lower()
            user = User(dealer_id=dealer, email=email, name=key, password_hash=password_hash,
                        active=True, created_at=WORLD_NOW)
            s.add(user)
            await s.flush()
            world.users[key], world.emails[key] = user.id, email
            if role:
                s.add(RoleAssignment(user_id=user.id, role=role, dealer_id=dealer,
                                     customer_id=customer_id, created_at=WORLD_NOW))
    return world
