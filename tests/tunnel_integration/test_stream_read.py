"""``TunnelStream.read`` batching: what is buffered comes back in one read, credited once."""

from __future__ import annotations

import asyncio

from ewsgate.aio.streams import TunnelStream


class _FakeConnection:
    """The two things a reading stream asks of its connection: the loop and acknowledge()."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.acks: list[tuple[int, int]] = []

    def acknowledge(self, stream_id: int, size: int) -> None:
        self.acks.append((stream_id, size))


def _stream(conn: _FakeConnection) -> TunnelStream:
    return TunnelStream(conn, 1, 0)  # type: ignore[arg-type]


async def test_read_returns_every_buffered_chunk_that_fits_and_acknowledges_once() -> None:
    conn = _FakeConnection()
    stream = _stream(conn)
    for part in (b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 10):
        stream.on_data(part)
    assert await stream.read(35) == b"a" * 10 + b"b" * 10 + b"c" * 10
    assert conn.acks == [(1, 30)]
    assert stream.buffered == 10
    assert await stream.read(100) == b"d" * 10
    assert conn.acks == [(1, 30), (1, 10)]
    assert stream.buffered == 0


async def test_read_cuts_a_first_chunk_larger_than_n() -> None:
    conn = _FakeConnection()
    stream = _stream(conn)
    stream.on_data(b"0123456789")
    stream.on_data(b"abc")
    assert await stream.read(4) == b"0123"
    assert await stream.read(100) == b"456789abc"
    assert conn.acks == [(1, 4), (1, 9)]


async def test_read_waits_for_data_then_eof() -> None:
    conn = _FakeConnection()
    stream = _stream(conn)
    reader = asyncio.ensure_future(stream.read(100))
    await asyncio.sleep(0)
    assert not reader.done()
    stream.on_data(b"hello")
    assert await reader == b"hello"
    stream.on_eof()
    assert await stream.read(100) == b""
    assert await stream.read(0) == b""
