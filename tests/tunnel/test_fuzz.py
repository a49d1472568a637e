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
