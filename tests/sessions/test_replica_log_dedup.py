"""A relay that resends a log batch to whichever replica the load balancer picks: two portal
replicas (own database engines, one database) storing overlapping batches at once keep one
copy of each entry."""

from __future__ import annotations

import asyncio

import pytest

from ewsgate.portal.sessions.relay_log import ingest
from ewsgate.portal.store.db import Database

from .rt_world import RtWorld
from .test_relay_log import _entry, _session, _stored

pytestmark = pytest.mark.db


async def test_overlapping_batches_on_two_replicas_are_stored_once(
        rt: RtWorld, rt_database_url: str) -> None:
    db_b = Database(rt_database_url)
    try:
        session_id, job_id = await _session(rt)
        relay_id = rt.relays["relay-x"]
        batches = [[_entry(session_id, seq) for seq in range(start, start + 20)]
                   for start in (0, 10, 0, 5, 10, 0)]

        async def ship(database: Database, batch: list[object]) -> dict[str, object]:
            async with database.transaction() as s:
                return (await ingest(s, relay_id, batch)).as_json()

        results = await asyncio.gather(*(ship((rt.db, db_b)[i % 2], batch)
                                         for i, batch in enumerate(batches)))
        stored = await _stored(rt, job_id)
        assert sorted(row.seq for row in stored) == list(range(30))
        assert sum(int(r["accepted"]) for r in results) == 30
        assert sum(int(r["accepted"]) + int(r["duplicates"]) for r in results) == 120
    finally:
        await db_b.dispose()
