"""Fixtures for the portal's tests: a migrated database per test (or per module), and a
small world of dealers, customers, devices and users.

The database is a temporary SQLite file, or — when ``EWSGATE_TEST_DATABASE_URL`` names a
PostgreSQL database — a fresh schema in it, created, migrated with Alembic and dropped again,
so tests are independent of each other and of anyone else using the same database.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from portal_world import World, build_world, pg_base_url, pg_execute, with_schema

from ewsgate.portal.services.credentials import set_password_cost
from ewsgate.portal.store.db import Database, upgrade

# argon2 at production cost takes ~0.3 s per hash on a busy 2-core machine; the tests hash and
# verify hundreds of times. Same algorithm, lower cost.
set_password_cost(time_cost=1, memory_cost_kib=1024, parallelism=1)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "portal.sqlite3"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    return path


def _fresh_url(directory: Path, template: Path) -> Iterator[str]:
    base = pg_base_url()
    if base is None:
        target = directory / "portal.sqlite3"
        shutil.copyfile(template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    asyncio.run(pg_execute(base, f'CREATE SCHEMA "{schema}"'))
    try:
        url = with_schema(base, schema)
        asyncio.run(upgrade(url))
        yield url
    finally:
        asyncio.run(pg_execute(base, f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(scope="module")
def _pg_module_url(tmp_path_factory: pytest.TempPathFactory,
                   _sqlite_template: Path) -> Iterator[str | None]:
    """PostgreSQL only: one migrated schema per test module (emptied before each test)."""
    if pg_base_url() is None:
        yield None
        return
    yield from _fresh_url(tmp_path_factory.mktemp("pg"), _sqlite_template)


async def _pg_truncate_all(url: str) -> None:
    from sqlalchemy import text

    from ewsgate.portal.store.models import Base

    database = Database(url, pool=False)
    try:
        async with database.transaction() as session:
            # the audit trail's triggers refuse DELETE; the test superuser switches triggers
            # off for this housekeeping transaction only (only a superuser can)
            await session.execute(text("SET LOCAL session_replication_role = replica"))
            # DELETE, not TRUNCATE: on these tiny tables it is several times faster
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(text(f'DELETE FROM "{table.name}"'))
    finally:
        await database.dispose()


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path,
                 _pg_module_url: str | None) -> Iterator[str]:
    """The URL of a freshly migrated, empty database for this test: a copy of a migrated
    SQLite file, or (PostgreSQL) the module's migrated schema with every table emptied."""
    if _pg_module_url is not None:
        asyncio.run(_pg_truncate_all(_pg_module_url))
        yield _pg_module_url
        return
    yield from _fresh_url(tmp_path, _sqlite_template)


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory: pytest.TempPathFactory,
                        _sqlite_template: Path) -> Iterator[str]:
    """Like ``database_url``, shared by one test module (tests must roll back or not care)."""
    yield from _fresh_url(tmp_path_factory.mktemp("moduledb"), _sqlite_template)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` on ``database_url``."""
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def world(db: Database) -> World:
    """The small world, in this test's own database."""
    return await build_world(db)
