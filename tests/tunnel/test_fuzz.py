"""Property and fuzz tests over the frame parser and the connection's receive path."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ewsgate.tunnel import (
    Connection,
    ConnectionState,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    Event,
    ProtocolConfig,
    Role,
)
from ewsgate.tunnel.frames import HEADER, MAX_CONTROL_FRAME, FrameType, encode_frame

from .helpers import Pair

SMALL = ProtocolConfig(max_frame_size=16 * 1024, initial_stream_window=4096,
                       connection_window=8192, max_concurrent_streams=8, max_metadata=64)
BOUND = HEADER.size + MAX_CONTROL_FRAME


def _established(role: Role) -> Connection:
    pair = Pair(relay_config=SMALL, agent_config=SMALL)
    pair.handshake()
    for _ in range(3):
        pair.open()
    return pair.relay if role is Role.LISTENER else pair.agent


frame_types = st.sampled_from([*map(int, FrameType), 8, 255])
stream_ids = st.sampled_from([0, 1, 3, 5, 7, 9, 2, 0x7FFFFFFF])
payloads = st.one_of(st.binary(max_size=64), st.builds(struct.pack, st.just("!I"),
                                                       st.integers(0, 2**32 - 1)))
plausible_frames = st.builds(lambda t, f, s, p: encode_frame(t, f, s, p),
                             frame_types, st.integers(0, 255), stream_ids, payloads)
byte_soup = st.lists(st.one_of(plausible_frames, st.binary(max_size=40)), max_size=30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=byte_soup, role=st.sampled_from(list(Role)))
def test_any_bytes_yield_events_or_a_protocol_error_never_an_exception(
        chunks: list[bytes], role: Role) -> None:
    conn = _established(role)
    for chunk in chunks:
        events = conn.receive_data(chunk)
        conn.data_to_send()
        assert conn.buffered_inbound <= BOUND
        if conn.state is ConnectionState.CLOSED:
            assert any(isinstance(e, ConnectionTerminated) for e in events) or not events
    assert conn.open_streams <= SMALL.max_concurrent_streams


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2048), role=st.sampled_from(list(Role)))
def test_raw_random_bytes_from_the_first_byte_never_raise(data: bytes, role: Role) -> None:
    conn = Connection(role, SMALL)
    conn.receive_data(data)
    assert conn.buffered_inbound <= BOUND


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=12),
       cuts=st.lists(st.integers(1, 3000), max_size=40))
def test_splitting_the_byte_stream_anywhere_gives_the_same_events(
        sizes: list[int], cuts: list[int]) -> None:
    """TCP may cut frames anywhere: the same bytes and the same control events must come out.

    (DATA payloads are delivered as they arrive, so the number of DataReceived pieces may
    differ; their concatenation may not.)"""
    pair = Pair()
    pair.handshake()
    sid = pair.open()
    for i, size in enumerate(sizes):
        pair.relay.send_data(sid, bytes([i % 256]) * size, end_stream=i == len(sizes) - 1)
    wire = pair.relay.data_to_send()
    whole = Pair()
    whole.handshake()
    whole.open()
    expected = whole.agent.receive_data(wire)
    got = []
    pos = 0
    for cut in cuts:
        got += pair.agent.receive_data(wire[pos:pos + cut])
        pos += cut
    got += pair.agent.receive_data(wire[pos:])
    assert _merged(got) == _merged(expected)
    assert b"".join(getattr(e, "data", b"") for e in got) == b"".join(
        bytes([i % 256]) * size for i, size in enumerate(sizes))


def _merged(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, DataReceived) and isinstance(last, DataReceived) and \
                last.stream_id == event.stream_id and not last.end_stream:
            out[-1] = DataReceived(stream_id=event.stream_id, data=last.data + event.data,
                                   end_stream=event.end_stream)
        else:
            out.append(event)
    return out


def test_a_huge_declared_length_does_not_allocate() -> None:
    conn = _established(Role.DIALER)
    events = conn.receive_data(HEADER.pack(2**32 - 1, FrameType.DATA, 1, 1) + b"x" * 100)
    assert isinstance(events[-1], ConnectionTerminated)
    assert conn.buffered_inbound <= BOUND


# ---------------------------------------------------------------------- abuse budgets

_FLOOD_BUDGETS = ("small_windows", "empty_data")


def _pump(pair: Pair, events_seen: list[Event], read_sizes: list[int]) -> None:
    """Shuttle both ways until quiet; each end consumes what it got in ``read_sizes`` pieces."""
    for _ in range(64):
        moved = False
        for receiver, wire in ((pair.agent, pair.relay.data_to_send()),
                               (pair.relay, pair.agent.data_to_send())):
            if not wire:
                continue
            moved = True
            events = receiver.receive_data(wire)
            events_seen.extend(events)
            for event in events:
                if isinstance(event, DataReceived) and event.data:
                    left = len(event.data)
                    i = 0
                    while left:
                        step = min(left, read_sizes[i % len(read_sizes)])
                        receiver.acknowledge_received(event.stream_id, step)
                        left -= step
                        i += 1
        if not moved:
            return


def _send_all(pair: Pair, sender: Connection, sid: int, size: int, end: bool,
              seen: list[Event], reads: list[int]) -> None:
    """Send ``size`` bytes as the windows allow, shuttling between chunks (a bulk transfer)."""
    left = size
    while left:
        room = sender.send_capacity(sid)
        if room <= 0:
            _pump(pair, seen, reads)
            assert sender.send_capacity(sid) > 0, "a legitimate transfer stalled"
            continue
        step = min(left, room, 300_000)
        left -= step
        sender.send_data(sid, b"b" * step, end_stream=end and not left)
    if end and not size:
        sender.end_stream(sid)


actions = st.lists(st.one_of(
    st.tuples(st.just("request"), st.integers(0, 3000), st.integers(0, 200_000)),
    st.tuples(st.just("cancel_pending")),
    st.tuples(st.just("cancel_midway"), st.integers(1, 50_000)),
    st.tuples(st.just("crossed_resets")),
    st.tuples(st.just("page"), st.integers(2, 12)),
), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=actions, reads=st.lists(st.integers(1, 70_000), min_size=1, max_size=4),
       tick_every=st.integers(1, 8))
def test_legitimate_traffic_never_exhausts_an_abuse_budget(
        steps: list[tuple[object, ...]], reads: list[int], tick_every: int) -> None:
    """Short requests, browser-like pages with cancellations (before and after the agent
    accepted, and resets that cross on the wire), all at default budgets: the connection
    stays open, and what only a flood sends (tiny credit, empty DATA) is never counted."""
    pair = Pair()
    pair.handshake()
    seen: list[Event] = []
    now = 0.0
    for n, step in enumerate(steps):
        kind = step[0]
        if kind == "request":
            sid = pair.open()
            _send_all(pair, pair.relay, sid, int(step[1]), True, seen, reads)
            _pump(pair, seen, reads)
            _send_all(pair, pair.agent, sid, int(step[2]), True, seen, reads)
        elif kind == "cancel_pending":  # the browser went away while the agent was dialing
            sid = pair.relay.open_stream(0)
            pair.relay.reset_stream(sid)
        elif kind == "cancel_midway":
            sid = pair.open()
            _send_all(pair, pair.agent, sid, int(step[1]), False, seen, reads)
            pair.relay.reset_stream(sid)
        elif kind == "crossed_resets":  # both ends give up at the same moment
            sid = pair.open()
            pair.relay.reset_stream(sid, ErrorCode.CANCEL)
            pair.agent.reset_stream(sid, ErrorCode.CONNECT_FAILED)
        else:  # a page: several connections at once, one of them cancelled before ACCEPT
            sids = [pair.relay.open_stream(0) for _ in range(int(step[1]))]
            _pump(pair, seen, reads)
            pair.relay.reset_stream(sids[-1])
            for sid in sids[:-1]:
                pair.agent.accept_stream(sid)
            _pump(pair, seen, reads)
            for sid in sids[:-1]:
                pair.relay.end_stream(sid)
                _send_all(pair, pair.agent, sid, 20_000, True, seen, reads)
        _pump(pair, seen, reads)
        if n % tick_every == 0:
            now += 0.05
            pair.relay.tick(now)
            pair.agent.tick(now)
    assert not any(isinstance(e, ConnectionTerminated) for e in seen)
    assert pair.relay.state is ConnectionState.OPEN and pair.agent.state is ConnectionState.OPEN
    defaults = ProtocolConfig().budgets()
    for end in (pair.relay, pair.agent):
        for name in _FLOOD_BUDGETS:
            assert end.budget_left(name) == defaults[name].burst, name


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=st.sampled_from(["early_resets", "closed_frames", "small_windows",
                               "empty_data"]),
       burst=st.integers(1, 40), cuts=st.lists(st.integers(1, 200), max_size=20))
def test_a_flood_of_each_kind_ends_in_enhance_your_calm_however_it_is_cut(
        budget: str, burst: int, cuts: list[int]) -> None:
    from ewsgate.tunnel import Budget
    from ewsgate.tunnel.frames import encode_open, encode_reset

    cfg = ProtocolConfig(**{budget: Budget(burst=burst, per_second=1)})  # type: ignore[arg-type]
    pair = Pair(relay_config=cfg, agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    if budget == "early_resets":
        wire = b"".join(encode_open(s, 0, b"") + encode_reset(s, ErrorCode.CANCEL, "")
                        for s in range(sid + 2, sid + 2 + 2 * (burst + 1), 2))
    elif budget == "closed_frames":
        pair.relay.reset_stream(sid)
        pair.to_agent()
        wire = encode_reset(sid, ErrorCode.CANCEL, "") * (burst + 1)
    elif budget == "small_windows":
        wire = encode_frame(FrameType.WINDOW, 0, sid, struct.pack("!I", 1)) * (burst + 1)
    else:
        wire = encode_frame(FrameType.DATA, 0, sid, b"") * (burst + 1)
    events: list[Event] = []
    pos = 0
    for cut in [*cuts, len(wire)]:
        events += pair.agent.receive_data(wire[pos:pos + cut])
        pos += cut
    last = events[-1]
    assert isinstance(last, ConnectionTerminated) and last.budget == budget
    assert last.error_code is ErrorCode.ENHANCE_YOUR_CALM
    assert pair.agent.state is ConnectionState.CLOSED
