"""Portal REST API and service layer: latency per call (p50/p99) on SQLite and PostgreSQL.

A dealer with nested customers and N devices is seeded into a fresh database; then each row
runs one kind of call a bounded number of times, one at a time, in process (httpx's ASGI
transport: the full FastAPI app, authentication, role checks and the database, no sockets):

* ``GET /api/v1/devices`` (a page of 100) as a dealer-wide Administrator and as a Viewer scoped
  to one customer subtree;
* ``GET /api/v1/devices/{id}``, ``PUT .../remote-technician`` (a write), ``GET /api/v1/jobs``;
* ``POST /api/v1/auth/login`` with production argon2 parameters;
* reference: the service call ``list_devices`` without HTTP, and a plain ``SELECT`` of the
  same 100 rows without any access check — what the role checks and HTTP layer cost on top.

Run: ``.venv/bin/python bench/portal_api_bench.py [--devices 2000] [--calls 200]
[--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]``. Bounded: at most 5000 calls
per row; the PostgreSQL run uses a schema of its own and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from ewsgate.portal.app import create_app
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.services import actor_for, devices, users
from ewsgate.portal.services.credentials import hash_password
from ewsgate.portal.store.db import Database, parse_database_url, upgrade
from ewsgate.portal.store.models import (
    Customer,
    Dealer,
    Device,
    Installation,
    Job,
    RoleAssignment,
    User,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PASSWORD = "benchmark password"


async def seed(database: Database, n_devices: int) -> dict[str, Any]:
    password_hash = hash_password(PASSWORD)
    async with database.transaction() as s:
        dealer = Dealer(name="Bench dealer", created_at=NOW)
        s.add(dealer)
        await s.flush()
        customers: list[int] = []
        for i in range(20):  # 5 roots with 3 children each
            parent = customers[(i // 4) * 4] if i % 4 else None
            customer = Customer(dealer_id=dealer.id, parent_id=parent, name=f"C{i}",
                                created_at=NOW)
            s.add(customer)
            await s.flush()
            customers.append(customer.id)
        sites = []
        for cid in customers:
            site = Installation(customer_id=cid, name=f"site {cid}", enabled=True, online=True,
                                created_at=NOW)
            s.add(site)
            await s.flush()
            sites.append(site.id)
        rows = [Device(installation_id=sites[i % len(sites)], name=f"Printer {i:05d}", make="hp",
                       model="M480", ip=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                       mac=f"00:1b:a9:{i // 65536:02x}:{i // 256 % 256:02x}:{i % 256:02x}",
                       ews_endpoints=[{"scheme": "https", "port": 443}],
                       identity_method="mac", snmp_version="2c", snmp_port=161,
                       snmp_community="public", remote_technician_enabled=True,
                       created_at=NOW, updated_at=NOW) for i in range(n_devices)]
        s.add_all(rows)
        await s.flush()
        s.add_all([Job(type="open_device_web_page", status="completed", dealer_id=dealer.id,
                       customer_id=customers[i % 20], device_id=rows[i].id,
                       device_name=rows[i].name, created_at=NOW) for i in range(min(
                           n_devices, 500))])
        out: dict[str, Any] = {"device": rows[0].id, "customers": customers}
        for key, role, scope in (("admin", "administrator", None),
                                 ("viewer", "viewer", customers[0]),
                                 ("configurer", "configurer", None)):
            user = User(dealer_id=dealer.id, email=f"{key}@bench.example", name=key,
                        password_hash=password_hash, active=True, created_at=NOW)
            s.add(user)
            await s.flush()
            s.add(RoleAssignment(user_id=user.id, role=role, dealer_id=dealer.id,
                                 customer_id=scope, created_at=NOW))
            await s.flush()
            issued = await users.create_api_token(s, await actor_for(s, user), "bench")
            out[key] = {"Authorization": f"Bearer {issued.token}"}
            out[f"{key}_user"] = user
    return out


async def timed(calls: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    await call()  # warm-up
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"| {name} | {len(samples)} | {statistics.median(ordered):.2f} | {p99:.2f} | "
            f"{1000 / statistics.mean(ordered):.0f} |")


async def bench(url: str, label: str, n_devices: int, calls: int) -> list[str]:
    await upgrade(url)
    database = Database(url)
    try:
        world = await seed(database, n_devices)
        app = create_app(PortalConfig(database_url=url), database=database, ui=False)
        transport = httpx.ASGITransport(app=app)
        lines = []
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            async def get(path: str, headers: dict[str, str]) -> None:
                response = await http.get(path, headers=headers)
                assert response.status_code == 200, response.text

            device_path = f"/api/v1/devices/{world['device']}"
            enabled = [True]

            async def flip() -> None:
                enabled[0] = not enabled[0]
                response = await http.put(f"{device_path}/remote-technician",
                                          json={"enabled": enabled[0]},
                                          headers=world["configurer"])
                assert response.status_code == 200, response.text

            async def login() -> None:
                response = await http.post("/api/v1/auth/login", json={
                    "email": "admin@bench.example", "password": PASSWORD})
                assert response.status_code == 200, response.text

            async def service_list() -> None:
                async with database.transaction() as s:
                    actor = await actor_for(s, world["admin_user"], via="token")
                    await devices.list_devices(s, actor, limit=100)

            async def plain_select() -> None:
                async with database.transaction() as s:
                    rows = (await s.scalars(select(Device).order_by(Device.name, Device.id)
                                            .limit(100))).all()
                    assert len(rows) == min(100, n_devices)

            cases: list[tuple[str, int, Callable[[], Awaitable[Any]]]] = [
                ("GET /devices?limit=100 (admin, dealer-wide)", calls,
                 lambda: get("/api/v1/devices?limit=100", world["admin"])),
                ("GET /devices?limit=100 (viewer, one subtree)", calls,
                 lambda: get("/api/v1/devices?limit=100", world["viewer"])),
                ("GET /devices/{id}", calls, lambda: get(device_path, world["admin"])),
                ("PUT /devices/{id}/remote-technician (write)", calls, flip),
                ("GET /jobs (100 newest)", calls, lambda: get("/api/v1/jobs", world["admin"])),
                ("POST /auth/login (argon2id, RFC 9106 cost)", max(5, calls // 20), login),
                ("reference: service list_devices, no HTTP", calls, service_list),
                ("reference: plain SELECT 100 rows, no checks", calls, plain_select),
            ]
            for name, count, call in cases:
                lines.append(row(f"{label}: {name}", await timed(min(count, 5000), call)))
        return lines
    finally:
        await database.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--postgres", help="a PostgreSQL URL to run the same rows against")
    args = parser.parse_args()
    lines = ["| call | n | p50 ms | p99 ms | calls/s (serial) |", "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
        lines += await bench(url, "SQLite", args.devices, args.calls)
    if args.postgres:
        import asyncpg

        base, _ = parse_database_url(args.postgres)
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        try:
            url = base.update_query_dict({"schema": schema}).render_as_string(
                hide_password=False)
            lines += await bench(url, "PostgreSQL", args.devices, args.calls)
        finally:
            await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await connection.close()
    print(f"portal API, {args.devices} devices in 20 nested customers, serial calls in process")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
