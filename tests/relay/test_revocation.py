"""The relay's revocation rules and the event-stream codec, without I/O: events in, decisions
out (ewsgate.revocations, ewsgate.relay.revocation)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.relay.revocation import Revocations, TunnelFacts
from ewsgate.relay.tickets import TunnelTicket
from ewsgate.relay.upstream import DeviceView
from ewsgate.revocations import (
    EventError,
    Heartbeat,
    InstallationRevoked,
    SessionRevoked,
    Snapshot,
    SseDecoder,
    encode_event,
    parse_event,
)

NOW = 1_800_000_000.0


def _snapshot(live: tuple[str, ...] = (), revoked: tuple[SessionRevoked, ...] = (),
              installations: tuple[InstallationRevoked, ...] = ()) -> Snapshot:
    return Snapshot(server_time=NOW, live_sessions=live, revoked_sessions=revoked,
                    installations=installations)


def _tunnel(sid: str, *, inst: str = "7", issued: float = NOW - 60,
            thumb: str | None = "T-old", registered: float = NOW - 50) -> TunnelFacts:
    return TunnelFacts(session_id=sid, installation_id=inst, issued_at=issued, thumbprint=thumb,
                       registered_at=registered)


def _ticket(sid: str, *, inst: str = "7", issued: float = NOW - 60, generation: int = 1,
            thumb: str = "T-old") -> TunnelTicket:
    return TunnelTicket(session_id=sid, installation_id=inst, relay_id="1", jti="j",
                        issued_at=issued, expires_at=NOW + 600, device=DeviceView(ip="192.0.2.1"),
                        generation=generation, claims={}, certificate_thumbprint=thumb)


def _ready() -> Revocations:
    revocations = Revocations()
    revocations.apply(_snapshot(), now=NOW)
    return revocations


def test_a_session_revocation_closes_its_tunnel_and_refuses_every_generation() -> None:
    revocations = _ready()
    decision = revocations.apply(
        SessionRevoked(session_id="a", reason="ended by its owner", expires_at=NOW + 900),
        now=NOW, tunnels=[_tunnel("a"), _tunnel("b")])
    assert decision.close == (("a", "ended by its owner"),)
    for generation in (1, 2, 99):
        refusal = revocations.refusal(_ticket("a", generation=generation), now=NOW)
        assert refusal is not None and refusal.code == "session_revoked"
    assert revocations.refusal(_ticket("b"), now=NOW) is None


def test_an_installation_revocation_closes_its_earlier_tunnels_only() -> None:
    revocations = _ready()
    event = InstallationRevoked(installation_id="7", revoked_at=NOW - 10, reason="disabled")
    decision = revocations.apply(event, now=NOW, tunnels=[
        _tunnel("before", issued=NOW - 60), _tunnel("after", issued=NOW - 5),
        _tunnel("other", inst="8", issued=NOW - 60)])
    assert [sid for sid, _ in decision.close] == ["before"]
    assert revocations.refusal(_ticket("x", issued=NOW - 11), now=NOW) is not None
    assert revocations.refusal(_ticket("y", issued=NOW - 5), now=NOW) is None
    assert revocations.refusal(_ticket("z", inst="8", issued=NOW - 60), now=NOW) is None


def test_a_superseded_certificate_is_refused_even_with_a_later_ticket() -> None:
    revocations = _ready()
    revocations.apply(InstallationRevoked(installation_id="7", revoked_at=NOW - 10,
                                          reason="re-enrolled", thumbprint="T-old"), now=NOW)
    refusal = revocations.refusal(_ticket("late", issued=NOW, thumb="T-old"), now=NOW)
    assert refusal is not None and refusal.code == "installation_revoked"
    assert revocations.refusal(_ticket("new", issued=NOW, thumb="T-new"), now=NOW) is None


def test_reconciliation_ends_what_the_portal_calls_ended_or_does_not_know() -> None:
    revocations = Revocations()
    decision = revocations.apply(
        _snapshot(live=("live",), revoked=(SessionRevoked(session_id="gone", reason="ended",
                                                          expires_at=NOW + 60),)),
        now=NOW, asked_at=NOW - 1,
        tunnels=[_tunnel("live"), _tunnel("gone"), _tunnel("unknown"),
                 _tunnel("brand-new", registered=NOW - 0.5)])
    assert sorted(sid for sid, _ in decision.close) == ["gone", "unknown"]
    assert revocations.refusal(_ticket("gone"), now=NOW) is not None


def test_nothing_is_admitted_before_the_first_snapshot_nor_after_the_bound() -> None:
    revocations = Revocations(unreachable_after=30)
    refusal = revocations.refusal(_ticket("a"), now=NOW)
    assert refusal is not None and refusal.code == "portal_unreachable"
    revocations.heard(NOW)  # bytes before a snapshot prove nothing
    assert revocations.unreachable_reason(NOW) is not None
    revocations.apply(_snapshot(), now=NOW)
    assert revocations.refusal(_ticket("a"), now=NOW + 30) is None
    late = revocations.refusal(_ticket("a"), now=NOW + 30.5)
    assert late is not None and "30 s" in str(late)
    revocations.apply(Heartbeat(server_time=NOW + 31), now=NOW + 31)
    assert revocations.refusal(_ticket("a"), now=NOW + 31) is None


def test_revocations_are_forgotten_once_no_ticket_can_use_them() -> None:
    revocations = Revocations()
    revocations.apply(_snapshot(revoked=(SessionRevoked(session_id="a", reason="x",
                                                        expires_at=NOW + 10),),
                                installations=(InstallationRevoked(
                                    installation_id="7", revoked_at=NOW, reason="x"),)),
                      now=NOW)
    assert revocations.revoked_sessions == ["a"]
    later = Snapshot(server_time=NOW + 36 * 60, live_sessions=(), revoked_sessions=(),
                     installations=())
    revocations.apply(later, now=NOW + 36 * 60)
    assert revocations.revoked_sessions == []
    assert revocations.refusal(_ticket("b", issued=NOW - 1), now=NOW + 36 * 60) is None


# -- the wire form -----------------------------------------------------------------------------

EVENTS = [
    _snapshot(live=("a", "b"), revoked=(SessionRevoked(session_id="c", reason="ended",
                                                       expires_at=NOW + 1),),
              installations=(InstallationRevoked(installation_id="7", revoked_at=NOW,
                                                 reason="deleted", thumbprint="abc"),)),
    SessionRevoked(session_id="abc", reason="ended by its owner", expires_at=NOW + 5),
    InstallationRevoked(installation_id="9", revoked_at=NOW, reason="disabled"),
    Heartbeat(server_time=NOW),
]


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=50))
def test_events_survive_any_split_of_the_stream(cuts: list[int]) -> None:
    wire = b": comment\r\n" + b"".join(encode_event(e) for e in EVENTS)
    wire = wire.replace(b"\n\n", b"\r\n\r\n", 1)  # CRLF line ends count too
    decoder, seen, at = SseDecoder(), [], 0
    for cut in cuts * 100:
        if at >= len(wire):
            break
        seen.extend(decoder.feed(wire[at:at + cut]))
        at += cut
    seen.extend(decoder.feed(wire[at:]))
    assert seen == EVENTS


def test_unknown_events_are_skipped_and_bad_ones_refused() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"event: future_thing\ndata: {}\n\n") == []
    with pytest.raises(EventError, match="version"):
        parse_event("heartbeat", '{"v": 2, "server_time": 1}')
    with pytest.raises(EventError, match="not JSON"):
        parse_event("session_revoked", "{")
    with pytest.raises(EventError, match="session_id"):
        parse_event("session_revoked", '{"v": 1, "expires_at": 1}')
    with pytest.raises(EventError, match="lists"):
        parse_event("snapshot", '{"v": 1, "server_time": 1}')
