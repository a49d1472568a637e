"""The protocol core, playbook style: feed this, expect that. No event loop, no sockets."""

from __future__ import annotations

import struct

import pytest

from ewsgate.tunnel import (
    Connection,
    ConnectionState,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    GoawayReceived,
    HelloReceived,
    LocalProtocolError,
    PingAcknowledged,
    ProtocolConfig,
    Role,
    StreamAccepted,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamState,
    WindowUpdated,
)
from ewsgate.tunnel.frames import (
    HEADER,
    FrameParser,
    FrameType,
    encode_frame,
    encode_hello,
    parse_goaway,
    parse_reset,
)

from .helpers import Pair


def frames_of(data: bytes) -> list[tuple[int, int, int, bytes]]:
    parser = FrameParser(16 * 1024 * 1024)
    parser.feed(data)
    out = []
    while (frame := parser.next_frame()) is not None:
        out.append((frame.type, frame.flags, frame.stream_id, frame.payload))
    return out


def test_handshake_carries_the_ticket_and_settings() -> None:
    pair = Pair(ticket=b"eyJ.ticket")
    events = pair.to_relay()
    assert len(events) == 1 and isinstance(events[0], HelloReceived)
    assert events[0].credential == b"eyJ.ticket"
    assert pair.relay.state is ConnectionState.HANDSHAKE
    pair.relay.accept_peer()
    assert pair.relay.state is ConnectionState.OPEN
    assert isinstance(pair.to_agent()[0], HelloReceived)
    assert pair.agent.state is ConnectionState.OPEN


def test_refused_ticket_reaches_the_agent_as_goaway_with_reason() -> None:
    pair = Pair()
    pair.to_relay()
    pair.relay.refuse_peer(ErrorCode.TICKET_REFUSED, "ticket expired at 12:00")
    events = pair.to_agent()
    assert isinstance(events[0], GoawayReceived)
    assert events[0].error_code is ErrorCode.TICKET_REFUSED
    assert events[0].reason == "ticket expired at 12:00"
    assert isinstance(events[1], ConnectionTerminated) and events[1].remote
    assert pair.agent.state is ConnectionState.CLOSED


def test_streams_exchange_data_both_ways_and_half_close() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.relay.open_stream(1, b"req-7")
    [opened] = pair.to_agent()
    assert opened == StreamOpened(stream_id=sid, port_index=1, metadata=b"req-7")
    pair.agent.accept_stream(sid)
    assert pair.to_relay() == [StreamAccepted(stream_id=sid)]
    pair.relay.send_data(sid, b"GET / HTTP/1.1\r\n\r\n", end_stream=True)
    events = pair.to_agent()
    assert events == [DataReceived(stream_id=sid, data=b"GET / HTTP/1.1\r\n\r\n",
                                   end_stream=True), StreamEnded(stream_id=sid)]
    assert pair.agent.stream_state(sid) is StreamState.HALF_CLOSED_REMOTE
    pair.agent.send_data(sid, b"HTTP/1.1 200 OK\r\n\r\nhi")
    pair.agent.end_stream(sid)
    events = pair.to_relay()
    assert [type(e) for e in events] == [DataReceived, StreamEnded]
    assert pair.relay.open_streams == 0 and pair.agent.open_streams == 0


def test_many_streams_interleave_independently() -> None:
    pair = Pair()
    pair.handshake()
    sids = [pair.open(i % 3) for i in range(50)]
    for sid in sids:
        pair.relay.send_data(sid, str(sid).encode() * 10)
    got = {e.stream_id: e.data for e in pair.to_agent() if isinstance(e, DataReceived)}
    assert got == {sid: str(sid).encode() * 10 for sid in sids}


def test_large_write_is_split_into_frames_of_the_peer_maximum() -> None:
    cfg = ProtocolConfig(max_frame_size=16 * 1024)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    pair.relay.send_data(sid, b"x" * 50_000)
    raw = pair.relay.data_to_send()
    sizes = [len(f[3]) for f in frames_of(raw)]
    assert max(sizes) == 16 * 1024 and sum(sizes) == 50_000
    data = b"".join(e.data for e in pair.agent.receive_data(raw) if isinstance(e, DataReceived))
    assert data == b"x" * 50_000


def test_read_only_views_are_queued_without_a_copy_writable_buffers_are_copied() -> None:
    cfg = ProtocolConfig(max_frame_size=16 * 1024)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    source = bytes(range(256)) * 100  # 25,600 bytes: two frames
    view = memoryview(source)[100:]
    pair.relay.send_data(sid, view[:20_000])
    parts = pair.relay.data_to_send_parts()
    assert any(isinstance(p, memoryview) and p.obj is source for p in parts)  # not copied
    writable = bytearray(b"a" * 30_000)
    pair.relay.send_data(sid, memoryview(writable)[:20_000])
    pair.relay.send_data(sid, writable[20_000:])
    writable[:] = b"b" * 30_000  # the owner reuses its buffer before the bytes are sent
    raw = b"".join(parts) + pair.relay.data_to_send()
    data = b"".join(e.data for e in pair.agent.receive_data(raw) if isinstance(e, DataReceived))
    assert data == source[100:20_100] + b"a" * 30_000


def test_send_beyond_window_is_a_local_error_and_window_updates_restore_it() -> None:
    cfg = ProtocolConfig(initial_stream_window=1000, max_stream_window=1000)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    assert pair.relay.send_capacity(sid) == 1000
    with pytest.raises(LocalProtocolError) as info:
        pair.relay.send_data(sid, b"x" * 1001)
    assert info.value.code is ErrorCode.FLOW_CONTROL_ERROR
    pair.relay.send_data(sid, b"x" * 1000)
    assert pair.relay.send_capacity(sid) == 0
    pair.to_agent()
    pair.agent.acknowledge_received(sid, 1000)
    events = pair.to_relay()
    assert WindowUpdated(stream_id=sid, increment=1000) in events
    assert pair.relay.send_capacity(sid) == 1000


def test_exceeding_the_stream_window_by_one_byte_resets_only_that_stream() -> None:
    cfg = ProtocolConfig(initial_stream_window=1000)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid, other = pair.open(), pair.open()
    raw = encode_frame(FrameType.DATA, 0, sid, b"x" * 1001)
    events = pair.agent.receive_data(raw)
    assert len(events) == 1 and isinstance(events[0], StreamReset)
    assert events[0].error_code is ErrorCode.FLOW_CONTROL_ERROR and not events[0].remote
    [(ftype, _, rsid, payload)] = frames_of(pair.agent.data_to_send())
    assert (ftype, rsid, parse_reset(payload)[0]) == (FrameType.RESET, sid, 3)
    assert pair.agent.state is ConnectionState.OPEN
    pair.relay.send_data(other, b"still fine")
    assert DataReceived(stream_id=other, data=b"still fine") in pair.to_agent()


def test_exactly_the_window_is_accepted() -> None:
    cfg = ProtocolConfig(initial_stream_window=1000)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    events = pair.agent.receive_data(encode_frame(FrameType.DATA, 0, sid, b"x" * 1000))
    assert events == [DataReceived(stream_id=sid, data=b"x" * 1000)]


def test_exceeding_the_connection_window_is_a_connection_error() -> None:
    cfg = ProtocolConfig(connection_window=4096, initial_stream_window=100_000)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    events = pair.agent.receive_data(encode_frame(FrameType.DATA, 0, sid, b"x" * 4097))
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code is ErrorCode.FLOW_CONTROL_ERROR


def test_stream_window_overflow_resets_the_stream() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.open()
    events = pair.relay.receive_data(
        encode_frame(FrameType.WINDOW, 0, sid, struct.pack("!I", 2**31 - 1)))
    assert isinstance(events[0], StreamReset)
    assert events[0].error_code is ErrorCode.FLOW_CONTROL_ERROR
    assert pair.relay.state is ConnectionState.OPEN


def test_connection_window_overflow_closes_the_connection() -> None:
    pair = Pair()
    pair.handshake()
    events = pair.relay.receive_data(
        encode_frame(FrameType.WINDOW, 0, 0, struct.pack("!I", 2**31 - 1)))
    assert events[-1] == ConnectionTerminated(
        error_code=ErrorCode.FLOW_CONTROL_ERROR,
        reason="connection window overflow (over 2^31-1)")
    [(ftype, _, _, payload)] = frames_of(pair.relay.data_to_send())
    assert ftype == FrameType.GOAWAY and parse_goaway(payload)[1] == 3


def test_oversized_frame_is_refused_before_its_payload_arrives() -> None:
    cfg = ProtocolConfig(max_frame_size=16 * 1024)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    header = HEADER.pack(16 * 1024 + 1, FrameType.DATA, 0, sid)
    events = pair.agent.receive_data(header)
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code is ErrorCode.FRAME_SIZE_ERROR
    assert pair.agent.buffered_inbound < 64


def test_frame_for_an_unknown_stream_id_is_a_protocol_error() -> None:
    pair = Pair()
    pair.handshake()
    events = pair.agent.receive_data(encode_frame(FrameType.DATA, 0, 99, b"x"))
    assert events[-1].error_code is ErrorCode.PROTOCOL_ERROR  # type: ignore[attr-defined]
    assert "never opened" in events[-1].reason  # type: ignore[attr-defined]


def test_data_after_the_peer_reset_the_stream_is_answered_with_stream_closed() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.open()
    pair.relay.reset_stream(sid, ErrorCode.CANCEL, "browser left")
    events = pair.to_agent()
    assert events == [StreamReset(stream_id=sid, error_code=ErrorCode.CANCEL,
                                  reason="browser left")]
    # the relay (buggy or hostile) keeps sending on the stream it reset
    events = pair.agent.receive_data(encode_frame(FrameType.DATA, 0, sid, b"late"))
    assert events == []
    [(ftype, _, rsid, payload)] = frames_of(pair.agent.data_to_send())
    assert (ftype, rsid, parse_reset(payload)[0]) == (FrameType.RESET, sid,
                                                      ErrorCode.STREAM_CLOSED)
    assert pair.agent.state is ConnectionState.OPEN


def test_data_in_flight_after_our_reset_is_silently_dropped() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.open()
    pair.agent.send_data(sid, b"in flight")
    pair.relay.reset_stream(sid)
    [(ftype, _, _, _)] = frames_of(pair.relay.data_to_send())
    assert ftype == FrameType.RESET
    assert pair.to_relay() == []
    assert frames_of(pair.relay.data_to_send()) == []


def test_stream_count_is_limited_and_a_flood_closes_the_connection() -> None:
    cfg = ProtocolConfig(max_concurrent_streams=4, max_refused_streams=8)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    for _ in range(4):
        pair.open()
    assert not pair.relay.can_open_stream
    with pytest.raises(LocalProtocolError):
        pair.relay.open_stream(0)
    # a hostile relay ignores the limit: each extra OPEN is refused, then the flood is cut off
    raw = b"".join(encode_frame(FrameType.OPEN, 0, sid, b"\x00\x00")
                   for sid in range(9, 9 + 2 * 20, 2))
    events = pair.agent.receive_data(raw)
    refusals = [f for f in frames_of(pair.agent.data_to_send()) if f[0] == FrameType.RESET]
    assert len(refusals) == 8
    assert all(parse_reset(f[3])[0] == ErrorCode.REFUSED_STREAM for f in refusals)
    assert events[-1].error_code is ErrorCode.ENHANCE_YOUR_CALM  # type: ignore[attr-defined]


def test_oversized_open_metadata_refuses_the_stream_only() -> None:
    cfg = ProtocolConfig(max_metadata=8)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    events = pair.agent.receive_data(encode_frame(FrameType.OPEN, 0, 1, b"\x00\x00" + b"m" * 9))
    assert events == []
    [(_, _, _, payload)] = frames_of(pair.agent.data_to_send())
    assert parse_reset(payload)[0] == ErrorCode.METADATA_TOO_LARGE
    assert pair.agent.state is ConnectionState.OPEN


def test_dialer_may_not_open_streams() -> None:
    pair = Pair()
    pair.handshake()
    with pytest.raises(LocalProtocolError):
        pair.agent.open_stream(0)
    events = pair.relay.receive_data(encode_frame(FrameType.OPEN, 0, 1, b"\x00\x00"))
    assert isinstance(events[-1], ConnectionTerminated)


def test_no_data_before_accept() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.relay.open_stream(0)
    with pytest.raises(LocalProtocolError):
        pair.relay.send_data(sid, b"early")
    pair.to_agent()
    events = pair.agent.receive_data(b"")
    assert events == []
    events = pair.agent.receive_data(encode_frame(FrameType.DATA, 0, sid, b"early"))
    assert isinstance(events[0], StreamReset) and events[0].error_code is ErrorCode.PROTOCOL_ERROR


def test_frames_before_hello_are_refused() -> None:
    relay = Connection(Role.LISTENER)
    events = relay.receive_data(encode_frame(FrameType.PING, 0, 0, b"12345678"))
    assert isinstance(events[-1], ConnectionTerminated)


def test_version_mismatch_is_reported_with_its_code() -> None:
    relay = Connection(Role.LISTENER)
    hello = bytearray(encode_hello({}, b""))
    hello[HEADER.size + 4:HEADER.size + 6] = b"\x00\x09"
    events = relay.receive_data(bytes(hello))
    assert events[-1].error_code is ErrorCode.UNSUPPORTED_VERSION  # type: ignore[attr-defined]


def test_keepalive_pings_when_idle_and_declares_a_silent_peer_dead() -> None:
    cfg = ProtocolConfig(keepalive_interval=10, keepalive_timeout=5)
    pair = Pair(relay_config=cfg)
    pair.handshake()
    assert pair.relay.tick(0.0) == []
    assert pair.relay.tick(9.0) == [] and pair.relay.data_to_send() == b""
    pair.relay.tick(10.0)
    ping = pair.relay.data_to_send()
    assert frames_of(ping)[0][0] == FrameType.PING
    # a live peer answers; the timer starts over
    pair.agent.receive_data(ping)
    events = pair.relay.receive_data(pair.agent.data_to_send())
    assert isinstance(events[0], PingAcknowledged)
    assert pair.relay.tick(12.0) == []
    pair.relay.tick(22.0)
    assert frames_of(pair.relay.data_to_send())[0][0] == FrameType.PING
    # now the peer is silent
    assert pair.relay.tick(26.0) == []
    events = pair.relay.tick(27.0)
    assert events[0].error_code is ErrorCode.KEEPALIVE_TIMEOUT  # type: ignore[attr-defined]
    assert pair.relay.state is ConnectionState.CLOSED


def test_goaway_lets_open_streams_finish_and_refuses_new_ones() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.open()
    pair.agent.close()
    events = pair.to_relay()
    assert events == [GoawayReceived(last_stream_id=sid, error_code=ErrorCode.NO_ERROR)]
    with pytest.raises(LocalProtocolError):
        pair.relay.open_stream(0)
    pair.relay.send_data(sid, b"last words", end_stream=True)
    pair.to_agent()
    pair.agent.end_stream(sid)
    pair.to_relay()
    assert pair.relay.is_drained and pair.agent.is_drained


def test_goaway_resets_streams_the_peer_never_saw() -> None:
    pair = Pair()
    pair.handshake()
    first = pair.open()
    pair.agent.close()
    late = pair.relay.open_stream(0)
    events = pair.to_relay()
    assert StreamReset(stream_id=late, error_code=ErrorCode.REFUSED_STREAM,
                       reason="the peer is closing the connection") in events
    assert pair.relay.stream_state(first) is StreamState.OPEN


def test_sending_after_close_is_a_local_error() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.open()
    pair.relay.close(ErrorCode.SESSION_EXPIRED, "session expired")
    with pytest.raises(LocalProtocolError):
        pair.relay.send_data(sid, b"x")
    events = pair.to_agent()
    assert events[-1] == ConnectionTerminated(error_code=ErrorCode.SESSION_EXPIRED,
                                              reason="session expired", remote=True)


def test_a_data_frame_is_delivered_as_its_bytes_arrive() -> None:
    """A 256 KiB frame is never buffered whole: each arriving piece becomes an event."""
    pair = Pair()
    pair.handshake()
    sid = pair.open()
    pair.relay.send_data(sid, b"a" * 100_000 + b"b" * 100_000, end_stream=True)
    wire = pair.relay.data_to_send()
    first = pair.agent.receive_data(wire[:50_000])
    assert first == [DataReceived(stream_id=sid, data=b"a" * (50_000 - HEADER.size))]
    assert pair.agent.buffered_inbound == 0
    rest = pair.agent.receive_data(wire[50_000:])
    assert rest[-1] == StreamEnded(stream_id=sid)
    assert b"".join(e.data for e in first + rest if isinstance(e, DataReceived)) == \
        b"a" * 100_000 + b"b" * 100_000


def test_a_control_frame_over_the_control_limit_is_refused() -> None:
    pair = Pair()
    pair.handshake()
    events = pair.agent.receive_data(HEADER.pack(64 * 1024, FrameType.PING, 0, 0))
    assert events[-1].error_code is ErrorCode.FRAME_SIZE_ERROR  # type: ignore[attr-defined]


def test_parts_for_writelines_keep_large_payloads_uncopied() -> None:
    pair = Pair()
    pair.handshake()
    sid = pair.open()
    big = b"z" * 100_000
    pair.relay.send_data(sid, big)
    pair.relay.send_data(sid, b"small")
    parts = pair.relay.data_to_send_parts()
    assert any(part is big for part in parts)
    events = pair.agent.receive_data(b"".join(parts))
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == big + b"small"


def _fill_and_consume(pair: Pair, sid: int, rounds: int) -> None:
    """The relay sends all the credit it has; the agent's reader consumes everything at once."""
    for _ in range(rounds):
        room = pair.relay.send_capacity(sid)
        pair.relay.send_data(sid, b"x" * room)
        for event in pair.to_agent():
            if isinstance(event, DataReceived):
                pair.agent.acknowledge_received(sid, len(event.data))
        pair.to_relay()


def test_a_fast_readers_window_grows_up_to_the_maximum() -> None:
    cfg = ProtocolConfig(initial_stream_window=64 * 1024, max_stream_window=256 * 1024,
                         connection_window=4 << 20)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    _fill_and_consume(pair, sid, 6)
    assert pair.relay.send_capacity(sid) == 256 * 1024
    assert pair.agent.window_growth == 192 * 1024


def test_a_reader_that_acknowledges_each_frame_grows_by_consumed_volume() -> None:
    """Acking as frames arrive keeps the unacknowledged part under a quarter window, so the
    sender never looks starved from here; a window's worth consumed is what grows it."""
    cfg = ProtocolConfig(initial_stream_window=64 * 1024, max_stream_window=256 * 1024,
                         connection_window=4 << 20, max_frame_size=16 * 1024)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    sent = 0
    while pair.relay.send_capacity(sid) < 256 * 1024 and sent < 4 << 20:
        pair.relay.send_data(sid, b"x" * 16 * 1024)  # one frame; the window has room for it
        sent += 16 * 1024
        for event in pair.to_agent():
            if isinstance(event, DataReceived):
                pair.agent.acknowledge_received(sid, len(event.data))
        pair.to_relay()
    assert pair.agent.window_growth == 192 * 1024
    assert sent <= 64 * 1024 + 128 * 1024 + 16 * 1024  # a window's worth per doubling


def test_a_slow_reader_never_gets_a_larger_window() -> None:
    cfg = ProtocolConfig(initial_stream_window=64 * 1024, max_stream_window=1 << 20)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    sid = pair.open()
    pair.relay.send_data(sid, b"x" * pair.relay.send_capacity(sid))
    pair.to_agent()  # never consumed
    assert pair.relay.send_capacity(sid) == 0 and pair.agent.window_growth == 0


def test_window_growth_is_capped_by_the_connection_budget_and_released_on_close() -> None:
    cfg = ProtocolConfig(initial_stream_window=64 * 1024, max_stream_window=1 << 20,
                         window_growth_budget=128 * 1024, connection_window=8 << 20)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    first, second = pair.open(), pair.open()
    _fill_and_consume(pair, first, 8)
    _fill_and_consume(pair, second, 8)
    assert pair.agent.window_growth == 128 * 1024
    assert pair.relay.send_capacity(first) + pair.relay.send_capacity(second) == \
        2 * 64 * 1024 + 128 * 1024
    pair.relay.reset_stream(first)
    pair.to_agent()
    assert pair.agent.window_growth <= 128 * 1024 - (pair.relay.send_capacity(second) - 64 * 1024)


def test_a_reused_receive_buffer_is_never_referenced_after_receive_data() -> None:
    """The adapter decrypts into one buffer and reuses it; leftovers must be copied out."""
    pair = Pair()
    pair.handshake()
    sid = pair.open()
    pair.relay.send_ping(b"12345678")
    pair.relay.send_data(sid, b"hello world", end_stream=True)
    wire = pair.relay.data_to_send()
    buffer = bytearray(64)
    got: list[object] = []
    for start in range(0, len(wire), 7):  # cut inside headers and control frames
        piece = wire[start:start + 7]
        buffer[:len(piece)] = piece
        got += pair.agent.receive_data(memoryview(buffer)[:len(piece)])
        buffer[:] = b"\xee" * len(buffer)  # the adapter reuses the buffer
    data = b"".join(e.data for e in got if isinstance(e, DataReceived))
    assert data == b"hello world" and got[-1] == StreamEnded(stream_id=sid)


def test_a_ping_flood_closes_the_connection() -> None:
    cfg = ProtocolConfig(max_pings_per_tick=10)
    pair = Pair(agent_config=cfg)
    pair.handshake()
    ping = encode_frame(FrameType.PING, 0, 0, b"12345678")
    assert pair.agent.receive_data(ping * 10) == []
    pair.agent.tick(1.0)  # a tick starts a new allowance
    assert pair.agent.receive_data(ping * 10) == []
    events = pair.agent.receive_data(ping)
    assert events[-1].error_code is ErrorCode.ENHANCE_YOUR_CALM  # type: ignore[attr-defined]
