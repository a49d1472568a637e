"""The replica's revocation poller: one reader for all streams, a lagging stream is ended."""

from __future__ import annotations

import pytest

from ewsgate.portal.sessions.revocation_stream import QUEUE_LIMIT, RevocationStreams, StreamLagging
from ewsgate.revocations import SessionRevoked
from sessions.rt_world import RtWorld

pytestmark = pytest.mark.db


def _event(i: int) -> SessionRevoked:
    return SessionRevoked(session_id=f"s{i}", reason="ended", expires_at=2e9)


async def test_a_stream_that_falls_behind_is_ended_not_fed_forever(rt: RtWorld) -> None:
    streams = RevocationStreams(rt.db, rt.clock, poll=3600)
    async with streams.subscribe(1) as slow, streams.subscribe(2) as other:
        for i in range(QUEUE_LIMIT + 5):
            slow.offer([_event(i)])
        other.offer([_event(0)])
        with pytest.raises(StreamLagging):
            for _ in range(QUEUE_LIMIT + 5):
                await slow.next(0.1)
        assert await other.next(0.1) == [_event(0)]
        assert await other.next(0.01) == []  # quiet: the caller sends a heartbeat
    assert streams._task is None  # the poller stopped with the last stream
