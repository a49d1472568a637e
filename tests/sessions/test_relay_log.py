"""The Remote Technician Log ingest on the database: exactly one row per (session, seq), in the
order shipped, with the counts the relay relies on, whatever the batch sizes (one statement is
reused for every batch, so batches of different sizes must each count right)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from ewsgate.portal.sessions.relay_log import MAX_BATCH, MAX_URL, ingest
from ewsgate.portal.store.models import JobLogEntry
from sessions.rt_world import RtWorld, settle

pytestmark = pytest.mark.db


def _entry(session_id: str, seq: int, **over: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "session_id": session_id, "seq": seq, "time": 1796040000.25 + seq,
        "user": "tech@example.com", "method": "GET", "url": f"/page/{seq}", "status": 200,
        "bytes_in": 0, "bytes_out": 100 + seq, "duration_ms": 3, "outcome": "ok",
        "detail": None}
    entry.update(over)
    return entry


async def _session(rt: RtWorld) -> tuple[str, int]:
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    return view.session_id, view.job_id


async def _ingest(rt: RtWorld, entries: list[object], relay: str = "relay-x") -> dict[str, object]:
    async with rt.db.transaction() as s:
        return (await ingest(s, rt.relays[relay], entries)).as_json()


async def _stored(rt: RtWorld, job_id: int) -> list[JobLogEntry]:
    async with rt.db.transaction() as s:
        rows = await s.scalars(select(JobLogEntry).where(JobLogEntry.job_id == job_id)
                               .order_by(JobLogEntry.id))
        return list(rows)


async def test_batches_of_any_size_are_stored_once_in_shipped_order(rt: RtWorld) -> None:
    sid, job_id = await _session(rt)
    assert await _ingest(rt, [_entry(sid, 5)]) == {"accepted": 1, "duplicates": 0,
                                                   "rejected": []}
    # the seqs out of order on purpose: rows keep the order of the batch
    assert await _ingest(rt, [_entry(sid, n) for n in (9, 7, 8, 5, 7)]) == {
        "accepted": 3, "duplicates": 2, "rejected": []}
    full = [_entry(sid, n) for n in range(10, 10 + MAX_BATCH)]
    assert await _ingest(rt, full) == {"accepted": MAX_BATCH, "duplicates": 0, "rejected": []}
    # a relay restart resends everything: nothing new, nothing lost
    assert await _ingest(rt, full) == {"accepted": 0, "duplicates": MAX_BATCH, "rejected": []}
    overlap = [_entry(sid, n) for n in range(MAX_BATCH, MAX_BATCH + 20)]
    assert await _ingest(rt, overlap) == {"accepted": 10, "duplicates": 10, "rejected": []}
    seqs = [row.seq for row in await _stored(rt, job_id)]
    assert seqs == [5, 9, 7, 8, *range(10, MAX_BATCH + 20)]


async def test_values_round_trip_and_bad_entries_do_not_cost_good_ones(rt: RtWorld) -> None:
    sid, job_id = await _session(rt)
    long_url = "/" + "u" * (MAX_URL + 10)
    iso = _entry(sid, 2, at="2026-11-28T13:00:00.5Z", user=None, user_email="other@example.com")
    del iso["time"]
    batch: list[object] = [
        _entry(sid, 1, url=long_url, status=None, detail="device timeout", bytes_in=2**40),
        _entry(sid, -1),
        "not an object",
        _entry("no-such-session", 2),
        iso,
        _entry(sid, 3, extra=True),
    ]
    result = await _ingest(rt, batch)
    assert result["accepted"] == 2 and result["duplicates"] == 0
    rejected = result["rejected"]
    assert isinstance(rejected, list)
    assert [(r["index"], r["code"]) for r in rejected] == [
        (1, "invalid_entry"), (2, "invalid_entry"), (5, "invalid_entry"), (3, "unknown_session")]
    first, second = await _stored(rt, job_id)
    assert (first.seq, first.status, first.detail, first.bytes_in) == (
        1, None, "device timeout", 2**31 - 1)
    assert len(first.url) == MAX_URL and first.url.endswith("…")
    assert first.at.replace(tzinfo=UTC) == datetime.fromtimestamp(1796040001.25, UTC)
    assert second.user_email == "other@example.com"
    assert second.at.replace(tzinfo=UTC) == datetime(2026, 11, 28, 13, 0, 0, 500000, UTC)


async def test_only_the_pinned_relay_writes_and_an_all_rejected_batch_stores_nothing(
        rt: RtWorld) -> None:
    sid, job_id = await _session(rt)
    foreign = await _ingest(rt, [_entry(sid, n) for n in range(3)], relay="relay-y")
    assert foreign["accepted"] == 0
    assert [r["code"] for r in foreign["rejected"]] == ["unknown_session"] * 3  # type: ignore[union-attr]
    assert await _ingest(rt, [{"seq": 1}, None]) == {
        "accepted": 0, "duplicates": 0, "rejected": [
            {"index": 0, "code": "invalid_entry", "message": "session_id is required"},
            {"index": 1, "code": "invalid_entry", "message": "an entry must be a JSON object"}]}
    assert await _ingest(rt, []) == {"accepted": 0, "duplicates": 0, "rejected": []}
    assert await _stored(rt, job_id) == []


async def test_control_characters_from_the_relay_are_stored_escaped(rt: RtWorld) -> None:
    """A relay (or the device behind it) choosing the detail text cannot put terminal escapes
    or forged lines into the job log or its export."""
    sid, job_id = await _session(rt)
    hostile = "\x1b[2J\x1b]0;owned\x07\nERROR forged\r" + "x" * 10_000
    result = await _ingest(rt, [_entry(sid, 1, detail=hostile, url="/a\x1bb")])
    assert result["accepted"] == 1
    [entry] = await _stored(rt, job_id)
    assert "\x1b" not in entry.detail and "\n" not in entry.detail and "\x07" not in entry.detail
    assert entry.detail.startswith("\\x1b[2J\\x1b]0;owned\\x07\\x0aERROR forged\\x0d")
    assert len(entry.detail) <= 4000 and entry.detail.endswith("…")
    assert entry.url == "/a\\x1bb"


async def test_a_completion_replaces_its_begin_in_any_order_and_only_once(rt: RtWorld) -> None:
    """The relay spools a forwarded request as ``pending`` before the device sees it and
    completes it after; both may arrive in any order, any number of times."""
    sid, job_id = await _session(rt)
    begin = _entry(sid, 1, status=None, outcome="pending", detail="in_flight", bytes_out=0)
    done = _entry(sid, 1, status=502, outcome="error", detail="device_reset: reset")
    assert await _ingest(rt, [begin]) == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert [(r.outcome, r.status) for r in await _stored(rt, job_id)] == [("pending", None)]
    assert await _ingest(rt, [begin, done]) == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert await _ingest(rt, [done, begin]) == {"accepted": 0, "duplicates": 2, "rejected": []}
    rows = await _stored(rt, job_id)
    assert [(r.seq, r.outcome, r.status, r.detail) for r in rows] == [
        (1, "error", 502, "device_reset: reset")]
    # completion first (a re-shipped begin after a relay restart): the completion stays
    later_begin = _entry(sid, 2, status=None, outcome="pending", detail="in_flight")
    assert await _ingest(rt, [_entry(sid, 2), later_begin]) == {
        "accepted": 1, "duplicates": 1, "rejected": []}
    # a begin whose completion never came stays visible as such
    third = await _ingest(rt, [_entry(sid, 3, status=None, outcome="pending",
                                      detail="in_flight")])
    assert third["accepted"] == 1
    rows = await _stored(rt, job_id)
    assert [(r.seq, r.outcome) for r in rows] == [(1, "error"), (2, "ok"), (3, "pending")]
