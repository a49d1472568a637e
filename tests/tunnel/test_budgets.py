"""Abuse budgets, playbook style: a hostile peer's frames in, ENHANCE_YOUR_CALM + GOAWAY out."""

from __future__ import annotations

import struct

import pytest

from ewsgate.tunnel import (
    Budget,
    ConnectionState,
    ConnectionTerminated,
    ErrorCode,
    ProtocolConfig,
    StreamReset,
)
from ewsgate.tunnel.budgets import Budgets
from ewsgate.tunnel.frames import (
    FrameType,
    encode_frame,
    encode_open,
    encode_reset,
    parse_goaway,
)

from .helpers import Pair
from .test_connection import frames_of

TIGHT = Budget(burst=5, per_second=2)


def _pair(**budgets: Budget) -> Pair:
    cfg = ProtocolConfig(**budgets)  # type: ignore[arg-type]
    pair = Pair(relay_config=cfg, agent_config=cfg)
    pair.handshake()
    return pair


def _calm(events: list[object], budget: str) -> ConnectionTerminated:
    last = events[-1]
    assert isinstance(last, ConnectionTerminated)
    assert last.error_code is ErrorCode.ENHANCE_YOUR_CALM and not last.remote
    assert last.budget == budget
    return last


def _goaway_code(wire: bytes) -> int:
    goaways = [f for f in frames_of(wire) if f[0] == FrameType.GOAWAY]
    assert len(goaways) == 1
    return parse_goaway(goaways[0][3])[1]


def _open_reset(first_sid: int, count: int) -> bytes:
    return b"".join(encode_open(sid, 0, b"") + encode_reset(sid, ErrorCode.CANCEL, "")
                    for sid in range(first_sid, first_sid + 2 * count, 2))


def test_rapid_open_and_reset_is_answered_with_enhance_your_calm_then_goaway() -> None:
    pair = _pair(early_resets=TIGHT)
    events = pair.agent.receive_data(_open_reset(1, 5))
    assert sum(isinstance(e, StreamReset) for e in events) == 5
    assert pair.agent.state is ConnectionState.OPEN
    events = pair.agent.receive_data(_open_reset(11, 1))
    reason = _calm(events, "early_resets").reason
    assert "reset before they were accepted or used" in reason and "5 at once" in reason
    assert _goaway_code(pair.agent.data_to_send()) == ErrorCode.ENHANCE_YOUR_CALM
    assert pair.agent.state is ConnectionState.CLOSED


def test_a_reset_after_the_request_was_sent_is_not_an_early_reset() -> None:
    pair = _pair(early_resets=TIGHT)
    for _ in range(10):  # the browser cancels a request it had sent: legitimate
        sid = pair.open()
        pair.relay.send_data(sid, b"GET / HTTP/1.1\r\n\r\n")
        pair.to_agent()
        pair.relay.reset_stream(sid)
        assert not any(isinstance(e, ConnectionTerminated) for e in pair.to_agent())
    assert pair.agent.budget_left("early_resets") == 5


def test_accepted_but_never_used_streams_count_as_early_resets() -> None:
    """OPEN, wait for ACCEPT (the agent dialled the device), RESET: the same flood, slower."""
    pair = _pair(early_resets=TIGHT)
    for n in range(6):
        sid = pair.open()
        pair.relay.reset_stream(sid)
        events = pair.to_agent()
    _calm(events, "early_resets")
    assert n == 5


def test_the_relay_end_does_not_count_the_agents_resets() -> None:
    """The agent resets streams it cannot serve (device unreachable): that is its answer."""
    pair = _pair(early_resets=TIGHT)
    for _ in range(20):
        sid = pair.relay.open_stream(0)
        pair.to_agent()
        pair.agent.reset_stream(sid, ErrorCode.CONNECT_FAILED)
        assert not any(isinstance(e, ConnectionTerminated) for e in pair.to_relay())


def test_the_budget_refills_with_time_passed_to_tick() -> None:
    pair = _pair(early_resets=TIGHT)
    pair.agent.tick(100.0)  # the first tick only sets the time
    pair.agent.receive_data(_open_reset(1, 5))
    assert pair.agent.budget_left("early_resets") == 0
    pair.agent.tick(100.4)  # 0.8 of a token: nothing yet, and the fraction is kept
    assert pair.agent.budget_left("early_resets") == 0
    pair.agent.tick(101.0)  # 1.2 s at 2/s: two tokens
    assert pair.agent.budget_left("early_resets") == 2
    pair.agent.tick(1000.0)  # never above the burst
    assert pair.agent.budget_left("early_resets") == 5
    events = pair.agent.receive_data(_open_reset(11, 5))
    assert not any(isinstance(e, ConnectionTerminated) for e in events)


def test_resets_for_closed_streams_are_counted() -> None:
    pair = _pair(closed_frames=TIGHT)
    sid = pair.open()
    pair.relay.reset_stream(sid)
    pair.to_agent()
    junk = encode_reset(sid, ErrorCode.CANCEL, "")
    assert pair.agent.receive_data(junk * 5) == []
    _calm(pair.agent.receive_data(junk), "closed_frames")
    assert _goaway_code(pair.agent.data_to_send()) == ErrorCode.ENHANCE_YOUR_CALM


def test_windows_and_data_for_closed_streams_are_counted_on_the_relay_too() -> None:
    pair = _pair(closed_frames=TIGHT)
    sid = pair.open()
    pair.agent.end_stream(sid)
    pair.relay.end_stream(sid)
    pair.to_relay()
    pair.to_agent()
    window = encode_frame(FrameType.WINDOW, 0, sid, struct.pack("!I", 4096))
    data = encode_frame(FrameType.DATA, 0, sid, b"late")  # after the agent's own FIN
    assert not any(isinstance(e, ConnectionTerminated)
                   for e in pair.relay.receive_data(window * 2 + data * 3))
    _calm(pair.relay.receive_data(window), "closed_frames")


def test_data_in_flight_after_our_reset_costs_no_budget() -> None:
    """Bytes the peer sent before it saw our RESET are legitimate (bounded by the windows)."""
    pair = _pair(closed_frames=TIGHT)
    sid = pair.open()
    pair.relay.send_data(sid, b"x" * 100)
    late = pair.relay.data_to_send() * 20
    pair.agent.reset_stream(sid)
    events = pair.agent.receive_data(late)
    assert not any(isinstance(e, ConnectionTerminated) for e in events)
    assert pair.agent.budget_left("closed_frames") == 5


def test_tiny_window_credit_is_counted_and_real_credit_is_not() -> None:
    pair = _pair(small_windows=TIGHT)
    sid = pair.open()
    plus_one = encode_frame(FrameType.WINDOW, 0, sid, struct.pack("!I", 1))
    conn_plus_one = encode_frame(FrameType.WINDOW, 0, 0, struct.pack("!I", 1))
    real = encode_frame(FrameType.WINDOW, 0, sid, struct.pack("!I", 256 * 1024))
    assert not any(isinstance(e, ConnectionTerminated)
                   for e in pair.agent.receive_data(real * 50 + plus_one * 3 + conn_plus_one * 2))
    _calm(pair.agent.receive_data(plus_one), "small_windows")


def test_empty_data_frames_are_counted_but_a_bare_end_stream_is_not() -> None:
    pair = _pair(empty_data=TIGHT)
    sids = [pair.open() for _ in range(8)]
    for sid in sids:  # an empty DATA with END_STREAM is how a half-close travels
        pair.relay.end_stream(sid)
    assert not any(isinstance(e, ConnectionTerminated) for e in pair.to_agent())
    sid = pair.open()
    empty = encode_frame(FrameType.DATA, 0, sid, b"")
    assert not any(isinstance(e, ConnectionTerminated)
                   for e in pair.agent.receive_data(empty * 5))
    _calm(pair.agent.receive_data(empty), "empty_data")


def test_thirty_thousand_junk_frames_are_not_all_accepted() -> None:
    """The issue's measurement: 30,000 junk frames went through; now the defaults stop them."""
    pair = _pair()
    sid = pair.open()
    junk = (encode_frame(FrameType.DATA, 0, sid, b"")
            + encode_frame(FrameType.WINDOW, 0, sid, struct.pack("!I", 1))) * 15_000
    events = pair.agent.receive_data(junk)
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code is ErrorCode.ENHANCE_YOUR_CALM


def test_budget_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="burst"):
        Budget(burst=0, per_second=1)
    budgets = Budgets(ProtocolConfig().budgets())
    assert budgets.remaining("early_resets") == ProtocolConfig().early_resets.burst
