"""The access-log spool: per-session order, restart without loss or reuse, retried shipping."""

from __future__ import annotations

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
