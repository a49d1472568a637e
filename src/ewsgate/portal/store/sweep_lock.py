"""Exactly one replica runs each periodic sweep: a PostgreSQL advisory lock per sweep.

Every portal replica runs the same sweeper loop (expiry of Remote Technician sessions,
teardown, pruning of spent OAuth codes). Each pass asks for the sweep's lock first and skips
the pass when another replica holds it::

    async with locks.hold("remote-sessions") as mine:
        if mine:
            await sessions.sweep()

On PostgreSQL the lock is ``pg_try_advisory_lock(key)`` on one pooled connection, released
with ``pg_advisory_unlock`` when the pass ends — and by the server itself if the replica dies
mid-pass (the connection goes, and with it the lock), so a crashed replica never blocks the
sweep. ``key`` is a stable 63-bit number derived from the sweep's name and the database schema
(advisory locks are per database, and two deployments may share one in separate schemas).
Never waiting is the point: a replica that finds the lock taken has nothing to do this tick.

On SQLite there is one portal process by definition (the database is a local file), so an
:class:`asyncio.Lock` per name keeps two passes of that process from overlapping.

The sweeps' own writes stay conditional (``UPDATE … WHERE status IN (…)``), so even two passes
that did overlap would end each session once; the lock keeps them from doing the work twice.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from ewsgate.portal.store.db import Database

__all__ = ["SweepLocks", "lock_key"]


def lock_key(name: str, schema: str) -> int:
    """The advisory-lock key of sweep ``name`` in ``schema`` (a positive signed 64-bit int)."""
    digest = hashlib.sha256(f"ewsgate sweep {schema}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class SweepLocks:
    """One per portal process; :meth:`hold` yields True when this replica runs the pass."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._local: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[bool]:
        local = self._local.setdefault(name, asyncio.Lock())
        if local.locked():
            yield False
            return
        async with local:
            if self._db.dialect != "postgresql":
                yield True
                return
            async with self._db.engine.connect() as connection:
                schema = str(await connection.scalar(text("SELECT current_schema()")))
                key = lock_key(name, schema)
                got = bool(await connection.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                                   {"k": key}))
                await connection.commit()
                if not got:
                    yield False
                    return
                try:
                    yield True
                finally:
                    await connection.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    await connection.commit()
