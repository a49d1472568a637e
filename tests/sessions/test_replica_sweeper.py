"""Two portal replicas race the Remote Technician sweeper: each expired session ends once.

Replica A is the usual test world; replica B has its own database engine (as another process
would) on the same database, its own session service and its own stand-in hub.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, text

from ewsgate.portal.auth import AuthSettings
from ewsgate.portal.sessions.naming import SessionConfig
from ewsgate.portal.sessions.runtime import RemoteTechnician
from ewsgate.portal.sessions.service import RemoteSessions
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Job, RemoteSession
from ewsgate.portal.store.sweep_lock import SweepLocks, lock_key
from ewsgate.portal.ui.rendering import Renderer

from .rt_world import RtWorld, ScriptedHub, settle

pytestmark = pytest.mark.db


@dataclass
class Replica:
    rt: RemoteTechnician
    sessions: RemoteSessions
    hub: ScriptedHub


def _replica(rt: RtWorld, db: Database, sessions: RemoteSessions, hub: ScriptedHub) -> Replica:
    return Replica(RemoteTechnician(db=db, keys=rt.keys, issuer=rt.issuer, oauth=rt.oauth,
                                    sessions=sessions, auth=AuthSettings(), clock=rt.clock,
                                    renderer=Renderer(rt.clock)), sessions, hub)


@pytest.fixture
async def two(rt: RtWorld, rt_database_url: str) -> AsyncIterator[tuple[Replica, Replica]]:
    db_b = Database(rt_database_url, keyring=rt.db.keyring)  # replicas share DATA_DIR/keys
    hub_b = ScriptedHub()
    sessions_b = RemoteSessions(db_b, hub_b, rt.issuer,
                                SessionConfig(open_timeout_seconds=5), rt.clock)
    try:
        yield _replica(rt, rt.db, rt.sessions, rt.hub), _replica(rt, db_b, sessions_b, hub_b)
    finally:
        await sessions_b.aclose()
        await db_b.dispose()


async def _settle(*replicas: Replica) -> None:
    for _ in range(50):
        tasks = [t for r in replicas
                 for t in (*r.sessions._tasks.values(), *r.sessions._background)]
        if not tasks:
            return
        await asyncio.gather(*tasks, return_exceptions=True)


async def _expired_sessions(rt: RtWorld, count: int) -> list[str]:
    actor = await rt.actor("tech")
    await rt.set_policy(max_sessions_per_device=count, max_sessions_per_user_per_device=count)
    ids = [(await rt.sessions.create(actor, rt.device["on"])).session_id for _ in range(count)]
    await settle(rt)
    rt.clock.advance(30 * 60 + 2)
    return ids


async def test_two_replicas_racing_the_sweeper_end_each_session_exactly_once(
        rt: RtWorld, two: tuple[Replica, Replica]) -> None:
    a, b = two
    ids = await _expired_sessions(rt, 6)
    sent_before = len(a.hub.sent)
    ran = await asyncio.gather(*(r.rt.sweep_once() for r in (a, b) * 6))
    assert any(ran)
    await _settle(a, b)
    async with rt.db.transaction() as s:
        rows = (await s.scalars(select(RemoteSession).where(RemoteSession.id.in_(ids)))).all()
        jobs = (await s.scalars(select(Job).where(
            Job.id.in_([row.job_id for row in rows])))).all()
    assert {row.status for row in rows} == {"ended"}
    assert {job.status for job in jobs} == {"completed"}
    closes = [c.payload["session_id"] for r in (a, b) for c in r.hub.sent[
        (sent_before if r is a else 0):] if c.kind == "CloseSession"]
    assert sorted(closes) == sorted(ids), "one CloseSession per session, from one replica"


async def test_a_replica_skips_the_pass_while_another_holds_the_lock(
        rt: RtWorld, two: tuple[Replica, Replica], rt_database_url: str) -> None:
    a, b = two
    if rt.db.dialect != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; a SQLite portal is one process")
    ids = await _expired_sessions(rt, 1)
    async with a.rt._locks.hold("remote-sessions") as mine:
        assert mine
        assert await b.rt.sweep_once() is False
        async with rt.db.transaction() as s:
            assert (await s.get(RemoteSession, ids[0])).status == "ready"
    assert await b.rt.sweep_once() is True
    async with rt.db.transaction() as s:
        assert (await s.get(RemoteSession, ids[0])).status == "ended"


async def test_a_replica_that_dies_holding_the_lock_does_not_block_the_sweep(
        rt: RtWorld, two: tuple[Replica, Replica], rt_database_url: str) -> None:
    """The lock belongs to a connection: when the holder's process dies, the server frees it."""
    import asyncpg

    from ewsgate.portal.store.db import parse_database_url

    if rt.db.dialect != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; a SQLite portal is one process")
    _, b = two
    url, _ = parse_database_url(rt_database_url)
    async with rt.db.transaction() as s:
        schema = str(await s.scalar(text("SELECT current_schema()")))
    dying = await asyncpg.connect(url.set(drivername="postgresql", query={})
                                  .render_as_string(hide_password=False))
    try:
        assert await dying.fetchval("SELECT pg_try_advisory_lock($1)",
                                    lock_key("remote-sessions", schema))
        assert await b.rt.sweep_once() is False
    finally:
        dying.terminate()  # the socket closes without a goodbye, as with kill -9
    for _ in range(100):
        if await b.rt.sweep_once():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the dead holder's lock was never released")


async def test_on_sqlite_one_process_never_overlaps_its_own_passes(rt: RtWorld) -> None:
    locks = SweepLocks(rt.db)
    async with locks.hold("x") as first, locks.hold("x") as second:
        assert first and not second
    async with locks.hold("x") as again:
        assert again
    async with rt.db.transaction() as s:
        assert await s.scalar(select(func.count()).select_from(RemoteSession)) == 0
