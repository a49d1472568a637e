"""Engine, sessions and migrations: the one place that knows which database is in use.

:class:`Database` wraps an async engine and a session factory. Every unit of work runs in
:meth:`Database.transaction`: it commits when the block ends normally and rolls back when it
raises, so a refused request leaves nothing half-written. Sessions use
``expire_on_commit=False`` so that rows read inside a transaction can still be serialised
after it (the models have no lazy relationships to trip over).

URLs: SQLite (``sqlite+aiosqlite:///path``; the default is ``DATA_DIR/portal.sqlite3``) or
PostgreSQL (``postgresql+asyncpg://user@host/db``). An ewsgate-specific query parameter
``schema=NAME`` puts every table in that PostgreSQL schema (it sets ``search_path``), which is
how the tests give each test module its own schema in a shared database.

On SQLite, foreign keys are switched on per connection (SQLite's default is off), with WAL
and a busy timeout so the portal and a CLI command can share the file. A new SQLite file is
created mode 0600 in a 0700 directory (SQLite gives its ``-wal``/``-shm`` files the database
file's mode).

Encrypted columns (:mod:`.sealed`) use the keyring the :class:`Database` is given; the portal
and the admin commands give the one in ``DATA_DIR/keys``. Without one a database gets a keyring
that lives only in the process (tests, in-memory use).
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from ewsgate.fsmode import private_dir, private_file
from ewsgate.portal.store.keyring import Keyring
from ewsgate.portal.store.sealed import bind_keyring

__all__ = [
    "Database",
    "DatabaseUrlError",
    "create_engine",
    "default_database_url",
    "parse_database_url",
    "upgrade",
    "upgrade_connection",
]

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseUrlError(ValueError):
    """The database URL cannot be used; the message says why and what to give instead."""


def default_database_url(data_dir: Path) -> str:
    """The embedded default: a SQLite file in the portal's data directory."""
    return f"sqlite+aiosqlite:///{(data_dir / 'portal.sqlite3').resolve()}"


def parse_database_url(text: str) -> tuple[URL, str | None]:
    """Split ``text`` into a SQLAlchemy URL and the optional ``schema`` query parameter."""
    try:
        url = make_url(text)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise DatabaseUrlError(
            f"{text!r} is not a database URL; expected e.g. sqlite+aiosqlite:///portal.sqlite3 "
            f"or postgresql+asyncpg://user@127.0.0.1:5432/ewsgate ({exc})") from None
    if url.drivername in ("sqlite", "postgresql", "postgres"):
        driver = "sqlite+aiosqlite" if url.drivername == "sqlite" else "postgresql+asyncpg"
        url = url.set(drivername=driver)
    if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise DatabaseUrlError(
            f"database driver {url.drivername!r} is not supported; use sqlite+aiosqlite:// "
            "or postgresql+asyncpg://")
    schema = url.query.get("schema")
    if isinstance(schema, tuple):
        schema = schema[-1]
    if schema is not None:
        if url.drivername != "postgresql+asyncpg":
            raise DatabaseUrlError("the schema= URL parameter is only for PostgreSQL")
        if not _SCHEMA_NAME.match(schema):
            raise DatabaseUrlError(f"schema {schema!r} is not a plain SQL identifier")
        url = url.difference_update_query(["schema"])
    return url, schema


def create_engine(url_text: str, *, pool: bool = True, echo: bool = False,
                  busy_timeout: float = 30.0) -> AsyncEngine:
    """An async engine for ``url_text`` with ewsgate's per-connection settings applied
    (``busy_timeout``: how long SQLite waits for a lock before "database is locked")."""
    url, schema = parse_database_url(url_text)
    kwargs: dict[str, Any] = {"echo": echo}
    if url.drivername.startswith("sqlite"):
        if url.database and url.database != ":memory:":
            path = Path(url.database)
            if not path.exists():
                private_dir(path.parent)
                private_file(path)
        kwargs["connect_args"] = {"timeout": busy_timeout}
    elif schema is not None:
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    if not pool:
        kwargs["poolclass"] = NullPool
    engine = create_async_engine(url, **kwargs)
    if url.drivername.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect",
                     functools.partial(_sqlite_on_connect, busy_ms=int(busy_timeout * 1000)))
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any, *, busy_ms: int = 30000) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
    cursor.close()


class Database:
    """An engine plus a session factory; one per process (or per test)."""

    def __init__(self, url: str, *, pool: bool = True, echo: bool = False,
                 keyring: Keyring | None = None, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.engine = create_engine(url, pool=pool, echo=echo, busy_timeout=busy_timeout)
        self.keyring = keyring or Keyring.ephemeral()
        bind_keyring(self.engine, self.keyring)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False,
                                           class_=AsyncSession)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on normal exit, roll back on any exception."""
        async with self.sessions() as session, session.begin():
            yield session

    async def upgrade(self, revision: str = "head") -> None:
        """Apply the migrations up to ``revision`` on this database."""
        async with self.engine.begin() as connection:
            await upgrade_connection(connection, revision)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade_connection(connection: AsyncConnection, revision: str = "head") -> None:
    """Run Alembic's upgrade on an open async connection (inside the caller's transaction)."""
    from alembic import command

    def run(sync_connection: Any) -> None:
        config = _alembic_config(str(sync_connection.engine.url))
        config.attributes["connection"] = sync_connection
        command.upgrade(config, revision)

    await connection.run_sync(run)


async def upgrade(url: str, revision: str = "head") -> None:
    """Open ``url``, apply the migrations up to ``revision`` and close it again."""
    database = Database(url, pool=False)
    try:
        await database.upgrade(revision)
    finally:
        await database.dispose()
