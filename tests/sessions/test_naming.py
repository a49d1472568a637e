"""Session ids, hosts, URLs, expiry and relay choice: the pure rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from ewsgate.portal.sessions.naming import (
    MAX_SESSION_SECONDS,
    SESSION_ID_PATTERN,
    SessionConfig,
    expiry_for,
    new_session_id,
    pick_relay,
    session_address,
)
from ewsgate.portal.sessions.status import SessionStatus, can_move


def test_session_ids_are_dns_labels_with_160_random_bits() -> None:
    ids = {new_session_id() for _ in range(2000)}
    assert len(ids) == 2000
    for sid in ids:
        assert SESSION_ID_PATTERN.fullmatch(sid)
        assert len(sid) * 5 >= 128  # base32: 5 bits a character


def test_address_with_non_default_port() -> None:
    sid = "a" * 32
    addr = session_address(sid, "rt.localhost", 8443)
    assert addr.host == f"s-{sid}.rt.localhost"
    assert addr.url == f"https://s-{sid}.rt.localhost:8443/"
    assert addr.redirect_uri == f"https://s-{sid}.rt.localhost:8443/.ewsgate/callback"


@pytest.mark.parametrize("port", [None, 443])
def test_address_on_443_omits_the_port(port: int | None) -> None:
    addr = session_address("b" * 32, "RT.Example.COM.", port)
    assert addr.url == f"https://s-{'b' * 32}.rt.example.com/"


@pytest.mark.parametrize("sid", ["A" * 32, "a" * 31, "a_" * 16, "../" * 11])
def test_bad_session_id_is_refused(sid: str) -> None:
    with pytest.raises(ValueError):
        session_address(sid, "rt.localhost", None)


@pytest.mark.parametrize("domain", ["", "-bad.example", "a..b", "ex ample.com", "a/b", "x_y.com"])
def test_bad_domain_is_refused(domain: str) -> None:
    with pytest.raises(ValueError):
        session_address("a" * 32, domain, None)


def test_expiry_is_capped_at_thirty_minutes() -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    assert expiry_for(now, SessionConfig()) == now + timedelta(minutes=30)
    assert expiry_for(now, SessionConfig(max_seconds=5)) == now + timedelta(seconds=5)


@pytest.mark.parametrize("seconds", [0, -1, MAX_SESSION_SECONDS + 1, 3600])
def test_a_maximum_above_thirty_minutes_cannot_be_configured(seconds: int) -> None:
    with pytest.raises(ValueError, match="30 minutes"):
        SessionConfig(max_seconds=seconds)


@dataclass
class R:
    id: int


def test_relay_with_fewest_live_sessions_is_picked() -> None:
    relays = [R(1), R(2), R(3)]
    assert pick_relay(relays, {}).id == 1
    assert pick_relay(relays, {"1": 4, "2": 1, "3": 1}).id == 2


def test_no_relay_is_a_clear_error() -> None:
    with pytest.raises(LookupError, match="create-relay"):
        pick_relay([], {})


def test_status_moves_forward_only() -> None:
    assert can_move("verifying", "connecting")
    assert can_move("verifying", "ready")
    assert can_move("ready", "ended")
    assert can_move("connecting", "failed")
    assert not can_move("ready", "connecting")
    assert not can_move("ended", "ready")
    assert not can_move("failed", "ended")
    assert not can_move("ready", "ready")
    assert {s.value for s in SessionStatus} == {"verifying", "connecting", "ready", "ended",
                                                "failed"}
