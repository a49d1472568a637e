"""The asyncio adapter against a flooding peer, over an in-memory transport (no sockets).

The core decides (``test_budgets.py``); this checks what the adapter does with it: a stream
reset before its handler ran never reaches the handler, the violation is reported once with
its budget, the GOAWAY goes out and the transport is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ewsgate.aio import connection as aio_connection
from ewsgate.aio.connection import TunnelConnection
from ewsgate.aio.streams import TunnelStream
from ewsgate.tunnel import Budget, Connection, ErrorCode, ProtocolConfig, Role
from ewsgate.tunnel.frames import FrameType, encode_open, encode_reset, parse_goaway

from .test_connection import frames_of


class MemoryTransport(asyncio.Transport):
    """Collects what the protocol writes; nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.written += part

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _agent_end(cfg: ProtocolConfig, handled: list[int],
                     violations: list[tuple[object, str, str]]
                     ) -> tuple[TunnelConnection, MemoryTransport, Connection]:
    async def handler(stream: TunnelStream) -> None:
        handled.append(stream.stream_id)
        stream.accept()

    conn = TunnelConnection(Role.DIALER, config=cfg, credential=b"t", on_stream=handler,
                            clock=lambda: 0.0, tick_interval=3600,
                            on_violation=lambda *v: violations.append(v))
    transport = MemoryTransport()
    conn.connection_made(transport)
    relay = Connection(Role.LISTENER, cfg)
    relay.receive_data(bytes(transport.written))
    transport.written.clear()
    relay.accept_peer()
    conn.data_received(relay.data_to_send())
    await conn.hello
    return conn, transport, relay


async def test_open_then_reset_in_one_read_never_reaches_the_handler() -> None:
    handled: list[int] = []
    violations: list[tuple[object, str, str]] = []
    conn, _, _ = await _agent_end(ProtocolConfig(), handled, violations)
    conn.data_received(b"".join(encode_open(sid, 0, b"") + encode_reset(sid, ErrorCode.CANCEL,
                                                                        "")
                                for sid in range(1, 41, 2)))
    conn.data_received(encode_open(41, 0, b""))
    for _ in range(5):
        await asyncio.sleep(0)
    assert handled == [41]  # only the stream that was not reset
    assert violations == [] and not conn.is_closed
    conn.close()


async def test_a_flood_is_reported_once_and_ends_in_goaway_enhance_your_calm(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aio_connection, "LINGER", 0.01)
    handled: list[int] = []
    violations: list[tuple[object, str, str]] = []
    cfg = ProtocolConfig(early_resets=Budget(burst=10, per_second=1))
    conn, transport, _ = await _agent_end(cfg, handled, violations)
    flood = b"".join(encode_open(sid, 0, b"") + encode_reset(sid, ErrorCode.CANCEL, "")
                     for sid in range(1, 2001, 2))
    conn.data_received(flood)
    for _ in range(5):
        await asyncio.sleep(0)
    assert handled == []
    assert len(violations) == 1
    code, reason, budget = violations[0]
    assert code is ErrorCode.ENHANCE_YOUR_CALM and budget == "early_resets"
    assert "10 at once" in reason
    assert conn.violation is not None and conn.violation.budget == "early_resets"
    goaways = [f for f in frames_of(bytes(transport.written)) if f[0] == FrameType.GOAWAY]
    assert [parse_goaway(f[3])[1] for f in goaways] == [ErrorCode.ENHANCE_YOUR_CALM]
    # the transport stays open a moment, reading and discarding, so the GOAWAY is not lost
    # to a TCP reset; then it is closed
    assert not transport.closed
    for _ in range(100):
        if transport.closed:
            break
        await asyncio.sleep(0.01)
    assert transport.closed
    why = await conn.wait_closed()
    assert why.code is ErrorCode.ENHANCE_YOUR_CALM
    # the rest of the flood, after the GOAWAY, is not even parsed
    conn.data_received(flood)
    assert len(violations) == 1


async def test_a_stream_error_of_the_peer_is_reported_without_closing() -> None:
    handled: list[int] = []
    violations: list[tuple[object, str, str]] = []
    cfg = ProtocolConfig(initial_stream_window=1024, max_stream_window=1024)
    conn, _, relay = await _agent_end(cfg, handled, violations)
    conn.data_received(encode_open(1, 0, b""))
    await asyncio.sleep(0)
    assert handled == [1]
    from ewsgate.tunnel.frames import HEADER

    conn.data_received(HEADER.pack(2048, FrameType.DATA, 0, 1) + b"x" * 2048)
    assert [v[0] for v in violations] == [ErrorCode.FLOW_CONTROL_ERROR]
    assert not conn.is_closed and conn.violation is None
    del relay
    conn.close()
