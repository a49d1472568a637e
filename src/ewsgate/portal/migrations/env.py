"""Alembic environment for the portal database (async; SQLite and PostgreSQL).

Two ways in: ``ewsgate db upgrade`` / :func:`ewsgate.portal.store.db.upgrade_connection` hand
over an open connection in ``config.attributes["connection"]`` (so the upgrade can run inside
an event loop that already exists); the ``alembic`` command line has none, so this module
opens an async engine itself from ``EWSGATE_DATABASE_URL`` or ``sqlalchemy.url``.
Batch mode is on so that later ALTERs work on SQLite too.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from alembic import context

import ewsgate.portal.oauth.models  # noqa: F401  (its table joins Base.metadata)
from ewsgate.portal.store.db import create_engine
from ewsgate.portal.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection: Any) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url, pool=False)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


def _run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


_connection = config.attributes.get("connection")
_url = os.environ.get("EWSGATE_DATABASE_URL") or config.get_main_option("sqlalchemy.url") or ""
if context.is_offline_mode():
    _run_offline(_url)
elif _connection is not None:
    _configure_and_run(_connection)
else:
    asyncio.run(_run_async(_url))
