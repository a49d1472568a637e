"""The oauth_codes table as migrated (0002) is exactly the model (no autogenerate drift)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import ewsgate.portal.oauth.models  # noqa: F401  (registers the table)
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Base

pytestmark = pytest.mark.db


async def test_migrated_oauth_codes_table_matches_the_model(rt_database_url: str) -> None:
    db = Database(rt_database_url, pool=False)
    try:
        async with db.engine.connect() as connection:
            diffs = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    finally:
        await db.dispose()

    def mentions_oauth(diff: object) -> bool:
        return "oauth_codes" in repr(diff)

    assert [d for d in diffs if mentions_oauth(d)] == []
