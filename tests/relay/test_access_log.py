"""The access-log spool: per-session order, restart without loss or reuse, retried shipping."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from ewsgate.relay.access_log import AccessLog, ShipError, redact_url


class Portal:
    """Takes batches (or fails on demand) and dedups on (session, seq) like the real portal."""

    def __init__(self) -> None:
        self.fail = False
        self.batches: list[list[dict[str, Any]]] = []

    async def ship(self, entries) -> None:
        if self.fail:
            raise ShipError("portal down")
        self.batches.append(list(entries))

    def unique(self) -> dict[tuple[str, int], dict[str, Any]]:
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for batch in self.batches:
            for entry in batch:
                out.setdefault((entry["session_id"], entry["seq"]), entry)
        return out


def _record(log: AccessLog, sid: str, url: str) -> None:
    log.record(session_id=sid, time=1.0, user="t@example.com", method="GET", url=url,
               status=200, bytes_in=0, bytes_out=10, duration_ms=3, outcome="ok")


async def test_sequence_numbers_are_per_session_and_survive_restart(tmp_path: Path) -> None:
    portal = Portal()
    log = AccessLog(tmp_path, portal, batch_size=3, segment_bytes=400)
    for i in range(5):
        _record(log, "a", f"/a{i}")
        _record(log, "b", f"/b{i}")
    while await log.ship_once():
        pass
    log.close()
    assert len(list(tmp_path.glob("segment-*.jsonl"))) <= 2  # shipped segments deleted
    again = AccessLog(tmp_path, portal, batch_size=3, segment_bytes=400)
    _record(again, "a", "/after")
    while await again.ship_once():
        pass
    unique = portal.unique()
    assert [unique[("a", n)]["url"] for n in range(1, 7)] == [
        "/a0", "/a1", "/a2", "/a3", "/a4", "/after"]
    assert len(unique) == 11 == sum(len(b) for b in portal.batches)


async def test_failed_shipping_keeps_entries_for_later(tmp_path: Path) -> None:
    portal = Portal()
    log = AccessLog(tmp_path, portal)
    _record(log, "a", "/x")
    portal.fail = True
    with pytest.raises(ShipError):
        await log.ship_once()
    assert log.pending()
    portal.fail = False
    assert await log.ship_once() == 1
    assert not log.pending()


async def test_unshipped_entries_are_reshipped_after_restart(tmp_path: Path) -> None:
    portal = Portal()
    log = AccessLog(tmp_path, portal)
    for i in range(4):
        _record(log, "a", f"/{i}")
    # simulate a crash after the portal stored a batch but before the cursor moved
    entries, _ = log._read_batch()
    await portal.ship(entries[:2])
    log.close()
    again = AccessLog(tmp_path, portal)
    while await again.ship_once():
        pass
    assert sorted(portal.unique()) == [("a", 1), ("a", 2), ("a", 3), ("a", 4)]


def test_torn_last_line_is_cut_on_start(tmp_path: Path) -> None:
    log = AccessLog(tmp_path, None)
    _record(log, "a", "/1")
    log.close()
    segment = next(tmp_path.glob("segment-*.jsonl"))
    with segment.open("ab") as handle:
        handle.write(b'{"session_id":"a","seq":2,"ti')
    again = AccessLog(tmp_path, None)
    _record(again, "a", "/2")
    again.close()
    lines = [json.loads(line) for line in segment.read_bytes().splitlines()]
    assert [(e["seq"], e["url"]) for e in lines] == [(1, "/1"), (2, "/2")]


def test_callback_code_and_state_never_reach_the_log(tmp_path: Path) -> None:
    log = AccessLog(tmp_path, None)
    secret = "/.ewsgate/callback?code=Abc123-secret&state=xyz_state&iss=http%3A%2F%2Fportal"
    entry = log.record(session_id="a", time=1.0, user=None, method="GET", url=secret,
                       status=303, bytes_in=0, bytes_out=0, duration_ms=1, outcome="auth")
    log.close()
    assert entry.url == "/.ewsgate/callback?code=\u2026&state=\u2026&iss=http%3A%2F%2Fportal"
    spooled = "".join(p.read_text() for p in tmp_path.glob("segment-*.jsonl"))
    assert "Abc123-secret" not in spooled and "xyz_state" not in spooled


def test_redaction_touches_only_the_relays_own_paths() -> None:
    assert redact_url("/status?code=42&state=idle") == "/status?code=42&state=idle"
    assert redact_url("/.ewsgate/callback") == "/.ewsgate/callback"
    assert redact_url("/.ewsgate/callback?error=access_denied&state=s") == (
        "/.ewsgate/callback?error=access_denied&state=\u2026")
    assert redact_url("/.ewsgate/callback?code&codex=1&state=") == (
        "/.ewsgate/callback?code&codex=1&state=\u2026")


class BrokenPortal(Portal):
    """Fails with an unexpected exception (a bug, an unreadable spool) a number of times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def ship(self, entries) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("unexpected")
        await super().ship(entries)


def _begin(log: AccessLog, sid: str, url: str) -> int:
    return log.begin(session_id=sid, time=1.0, user="t@example.com", method="GET", url=url)


def _complete(log: AccessLog, sid: str, seq: int, url: str, outcome: str = "ok") -> None:
    log.record(session_id=sid, time=1.0, user="t@example.com", method="GET", url=url,
               status=200, bytes_in=0, bytes_out=10, duration_ms=3, outcome=outcome, seq=seq)


async def test_a_begin_and_its_completion_ship_as_one_entry(tmp_path: Path) -> None:
    portal = Portal()
    log = AccessLog(tmp_path, portal, hold_pending=0)  # begins ship at once
    first = _begin(log, "a", "/slow")
    second = _begin(log, "a", "/fast")
    assert (first, second) == (1, 2)
    _complete(log, "a", second, "/fast")
    assert await log.ship_once() == 2
    # the still-open request went as pending; the finished one only as its completion
    assert [(e["seq"], e["outcome"]) for e in portal.batches[0]] == [(1, "pending"), (2, "ok")]
    _complete(log, "a", first, "/slow", outcome="error")
    _record(log, "a", "/next")
    assert await log.ship_once() == 2
    assert [(e["seq"], e["outcome"]) for e in portal.batches[1]] == [(1, "error"), (3, "ok")]
    log.close()


def test_a_begin_without_completion_is_completed_as_relay_stopped_on_start(
        tmp_path: Path) -> None:
    """kill -9 between forwarding and completing: the next start says so, truthfully."""
    log = AccessLog(tmp_path, None)
    open_seq = _begin(log, "a", "/in-flight")
    done = _begin(log, "a", "/done")
    _complete(log, "a", done, "/done")
    log.close()  # no completion for /in-flight: as if the relay died here
    again = AccessLog(tmp_path, None)
    assert _begin(again, "a", "/after") == 3  # numbers are not reused
    again.close()
    lines = [json.loads(line) for p in sorted(tmp_path.glob("segment-*.jsonl"))
             for line in p.read_bytes().splitlines()]
    finals = [e for e in lines if e["seq"] == open_seq and e["outcome"] != "pending"]
    assert len(finals) == 1 and finals[0]["outcome"] == "error"
    assert finals[0]["detail"].startswith("relay_stopped") and finals[0]["status"] is None
    # a third start completes /after (left open above) and nothing twice
    third = AccessLog(tmp_path, None)
    third.close()
    stopped = [json.loads(line)["seq"] for p in tmp_path.glob("segment-*.jsonl")
               for line in p.read_bytes().splitlines() if b"relay_stopped" in line]
    assert sorted(stopped) == [1, 3]


async def test_the_shipping_task_survives_unexpected_errors(tmp_path: Path) -> None:
    """Any exception is logged, backed off and retried; the task never ends quietly."""
    portal = BrokenPortal(failures=2)
    log = AccessLog(tmp_path, portal, ship_interval=0.01, max_backoff=0.02)
    task = asyncio.create_task(log.run())
    try:
        _record(log, "a", "/1")
        for _ in range(500):
            if portal.batches:
                break
            await asyncio.sleep(0.01)
        assert not task.done()
        assert [e["url"] for b in portal.batches for e in b] == ["/1"]
        assert log.ship_failures == 2 and log.last_error is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.close()


async def test_a_young_begin_is_held_back_so_a_quick_request_ships_once(tmp_path: Path) -> None:
    """Most requests complete within ``hold_pending``: the portal then never sees them as
    pending; a begin that is older ships as pending (a long download shows in flight)."""
    portal = Portal()
    log = AccessLog(tmp_path, portal, hold_pending=30)
    _record(log, "a", "/before")
    seq = _begin(log, "a", "/quick")
    _record(log, "b", "/other-session")
    assert await log.ship_once() == 1  # stops before the young begin
    assert log.pending()
    _complete(log, "a", seq, "/quick")
    assert await log.ship_once() == 2
    assert [(e["url"], e["outcome"]) for b in portal.batches for e in b] == [
        ("/before", "ok"), ("/quick", "ok"), ("/other-session", "ok")]
    long = _begin(log, "a", "/long")
    log.hold_pending = 0  # as if 30 s had passed
    assert await log.ship_once() == 1
    assert portal.batches[-1][0]["outcome"] == "pending"
    _complete(log, "a", long, "/long")
    assert await log.ship_once() == 1 and portal.batches[-1][0]["outcome"] == "ok"
    log.close()
