"""Two portal replicas drain one outbox: a row is claimed by one of them at a time
(PostgreSQL ``FOR UPDATE SKIP LOCKED``), and a lease lost to a crash is taken over once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from ewsgate.portal.notifications.outbox import (
    RetryPolicy,
    claim,
    notify,
    record_delivered,
)
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import CustomerContacts, Notification
from sessions.rt_world import RtWorld

pytestmark = pytest.mark.db
POLICY = RetryPolicy(lease_seconds=60)


async def _queue(rt: RtWorld, count: int) -> None:
    async with rt.db.transaction() as s:
        s.add(CustomerContacts(customer_id=rt.customer["A"],
                               emails=[f"c{i}@a.example" for i in range(count)],
                               updated_at=rt.clock()))
        await s.flush()
        await notify(s, "session_started", dealer_id=rt.dealer, customer_id=rt.customer["A"],
                     data={}, now=rt.clock())


async def test_two_replicas_claiming_at_once_never_take_the_same_row(rt: RtWorld) -> None:
    if rt.db.dialect != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite runs one portal process")
    await _queue(rt, 6)
    other = Database(rt.db.url)  # the second replica: its own engine and connections
    try:
        first_holds = asyncio.Event()
        release = asyncio.Event()

        async def replica_one() -> set[int]:
            async with rt.db.transaction() as s:
                items = await claim(s, now=rt.clock(), policy=POLICY, limit=3)
                first_holds.set()
                await release.wait()  # still inside the transaction: rows locked
                return {i.id for i in items}

        async def replica_two() -> set[int]:
            await first_holds.wait()
            async with other.transaction() as s:
                items = await claim(s, now=rt.clock(), policy=POLICY, limit=6)
            release.set()
            return {i.id for i in items}

        one, two = await asyncio.wait_for(asyncio.gather(replica_one(), replica_two()), 30)
    finally:
        await other.dispose()
    assert len(one) == 3 and len(two) == 3 and not one & two


async def test_a_lease_lost_to_a_crash_is_taken_over_and_the_late_outcome_ignored(
        rt: RtWorld) -> None:
    await _queue(rt, 1)
    async with rt.db.transaction() as s:
        [crashed] = await claim(s, now=rt.clock(), policy=POLICY)
    async with rt.db.transaction() as s:
        assert await claim(s, now=rt.clock(), policy=POLICY) == []  # leased
    rt.clock.advance(61)
    async with rt.db.transaction() as s:
        [taken] = await claim(s, now=rt.clock(), policy=POLICY)
    assert taken.id == crashed.id and taken.attempts == 2
    async with rt.db.transaction() as s:
        assert await record_delivered(s, crashed, now=rt.clock()) is False
        assert await record_delivered(s, taken, now=rt.clock()) is True
    async with rt.db.transaction() as s:
        row = (await s.scalars(select(Notification))).one()
    assert row.status == "delivered" and row.delivered_at == rt.clock()
    assert row.next_attempt_at <= rt.clock() + timedelta(seconds=60)


async def test_old_delivered_rows_are_pruned_failed_kept_longer_pending_never(
        rt: RtWorld) -> None:
    await _queue(rt, 4)
    async with rt.db.transaction() as s:
        rows = list((await s.scalars(select(Notification).order_by(Notification.id))).all())
        for row, status in zip(rows, ("delivered", "failed", "pending", "delivered"),
                               strict=True):
            row.status = status
        rows[3].created_at = rt.clock() + timedelta(days=29)  # young enough at day 31
    from ewsgate.portal.notifications.outbox import prune

    later = rt.clock() + timedelta(days=31)
    async with rt.db.transaction() as s:
        assert await prune(s, now=later, policy=POLICY) == 1
    async with rt.db.transaction() as s:
        assert await prune(s, now=rt.clock() + timedelta(days=91), policy=POLICY) == 2
        left = (await s.scalars(select(Notification.status))).all()
    assert left == ["pending"]
