"""Fixtures for the web UI's tests: a migrated database seeded through the service layer, the
portal application with the UI mounted, and an HTTP client that signs in like a browser.

The database is a temporary SQLite file, or a fresh PostgreSQL schema when
``EWSGATE_TEST_DATABASE_URL`` is set (the CI PostgreSQL leg).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from ewsgate.portal.services.credentials import set_password_cost
from ewsgate.portal.store.db import Database, parse_database_url, upgrade

from .ui_world import Seeded, build_app, seed

TEST_URL_ENV = "EWSGATE_TEST_DATABASE_URL"

# argon2 at its production cost takes ~0.5 s per hash here; these tests are about pages, not
# about the hash's strength, so new hashes use the lowest cost (still argon2id).
set_password_cost(time_cost=1, memory_cost_kib=1024, parallelism=1)


async def _pg(base_url: str, sql: str) -> None:
    import asyncpg

    url, _ = parse_database_url(base_url)
    connection = await asyncpg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def _ui_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ui-template") / "portal.sqlite3"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def _ui_pg_schema() -> Iterator[str | None]:
    """On PostgreSQL: one schema for this run, migrated once (tests empty it, see below)."""
    base = os.environ.get(TEST_URL_ENV)
    if not base:
        yield None
        return
    schema = f"ui_{uuid.uuid4().hex[:16]}"
    asyncio.run(_pg(base, f'CREATE SCHEMA "{schema}"'))
    try:
        url, _ = parse_database_url(base)
        full = url.update_query_dict({"schema": schema}).render_as_string(hide_password=False)
        asyncio.run(upgrade(full))
        yield full
    finally:
        asyncio.run(_pg(base, f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def ui_database_url(tmp_path: Path, _ui_sqlite_template: Path,
                    _ui_pg_schema: str | None) -> Iterator[str]:
    """An empty, migrated database for this test: a copy of a migrated SQLite file, or the
    run's PostgreSQL schema with every table emptied (faster than migrating per test)."""
    if _ui_pg_schema is None:
        target = tmp_path / "portal.sqlite3"
        shutil.copyfile(_ui_sqlite_template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    from ewsgate.portal.store.models import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    schema = parse_database_url(_ui_pg_schema)[1]
    asyncio.run(_pg(_ui_pg_schema, f'SET search_path TO "{schema}"; '
                                   f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield _ui_pg_schema


@pytest.fixture
async def ui_db(ui_database_url: str) -> AsyncIterator[Database]:
    database = Database(ui_database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def seeded(ui_db: Database) -> Seeded:
    return await seed(ui_db)


@pytest.fixture
async def client(ui_db: Database, seeded: Seeded) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(ui_db))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test",
                                 follow_redirects=False) as c:
        yield c


