"""The schema: migrations on the configured database, column round-trips, constraints."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from ewsgate.portal.store.db import Database, DatabaseUrlError, parse_database_url
from ewsgate.portal.store.models import Base, Dealer, Job, JobLogEntry

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


async def test_migration_creates_every_model_table(db: Database) -> None:
    async with db.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


async def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    await db.upgrade()
    async with db.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert "devices" in tables


async def test_datetimes_come_back_aware_utc(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Dealer(name="D", created_at=NOW))
    async with db.transaction() as session:
        dealer = await session.scalar(select(Dealer))
    assert dealer is not None and dealer.created_at == NOW and dealer.created_at.tzinfo == UTC


async def test_naive_datetime_is_refused(db: Database) -> None:
    with pytest.raises(Exception, match="aware"):
        async with db.transaction() as session:
            session.add(Dealer(name="D", created_at=datetime(2026, 1, 1)))


async def test_job_log_seq_is_unique_per_job(db: Database) -> None:
    async with db.transaction() as session:
        dealer = Dealer(name="D", created_at=NOW)
        session.add(dealer)
        await session.flush()
        job = Job(type="open_device_web_page", status="queued", dealer_id=dealer.id,
                  created_at=NOW)
        session.add(job)
        await session.flush()
        job_id = job.id
        session.add(JobLogEntry(job_id=job_id, seq=1, at=NOW, method="GET", url="/",
                                outcome="ok"))
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            session.add(JobLogEntry(job_id=job_id, seq=1, at=NOW, method="GET", url="/",
                                    outcome="ok"))


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            session.add(Job(type="x", status="queued", dealer_id=999, created_at=NOW))


def test_database_url_parsing() -> None:
    url, schema = parse_database_url("postgresql://u@h/db?schema=abc")
    assert url.drivername == "postgresql+asyncpg" and schema == "abc"
    assert "schema" not in url.query
    with pytest.raises(DatabaseUrlError, match="not supported"):
        parse_database_url("mysql://u@h/db")
    with pytest.raises(DatabaseUrlError, match="only for PostgreSQL"):
        parse_database_url("sqlite:///x.db?schema=a")
    with pytest.raises(DatabaseUrlError, match="identifier"):
        parse_database_url("postgresql://u@h/db?schema=a;drop")
