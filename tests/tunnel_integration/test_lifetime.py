"""Session lifetime at the tunnel layer: relay expiry, the agent's own hard cap, CloseSession."""

from __future__ import annotations

import asyncio
import time

import pytest

from ewsgate.relay.clock import ManualClock
from ewsgate.tunnel import ErrorCode

from .conftest import World, http_get

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_the_agent_ends_the_session_at_its_hard_cap_even_if_the_relay_does_not(
        world: World) -> None:
    clock = FakeClock()
    client = world.client(clock=clock, cap_margin=30.0)
    # a relay that would keep the tunnel for two hours (a broken or hostile relay)
    spec = world.spec(ttl=7200)
    session = await client.open_session(spec)
    stream = await world.registry.open_tunnel_stream(spec.session_id, 0)
    _, body = await http_get(stream, "/blob/10/1")
    assert len(body) == 10
    clock.now += 30 * 60 + 29  # inside the cap
    await asyncio.sleep(0.5)
    assert session.active and world.registry.lookup(spec.session_id) is not None
    clock.now += 2  # 30 min + 31 s: past the cap
    await asyncio.wait_for(asyncio.shield(session.ended), 2)
    assert session.state.value == "ended" and "hard cap" in session.reason
    assert stream.error is not None and stream.error.code == ErrorCode.SESSION_EXPIRED
    async with asyncio.timeout(2):
        while world.registry.lookup(spec.session_id) is not None:
            await asyncio.sleep(0.02)


async def test_the_cap_is_the_session_expiry_when_that_comes_first(world: World) -> None:
    clock = FakeClock()
    client = world.client(clock=clock)
    spec = world.spec(ttl=600)
    session = await client.open_session(spec)
    assert session.deadline == pytest.approx(spec.expires_at)
    clock.now = spec.expires_at
    await asyncio.wait_for(asyncio.shield(session.ended), 2)
    assert session.state.value == "ended"


async def test_the_relay_drops_the_tunnel_at_the_ticket_expiry(world: World) -> None:
    manual = ManualClock(start=time.time())
    world.registry.clock = manual
    client = world.client()
    spec = world.spec(ttl=600)
    session = await client.open_session(spec)
    tunnel = world.registry.tunnel(spec.session_id)
    assert tunnel is not None
    manual.set(tunnel.ticket.expires_at)
    await asyncio.wait_for(asyncio.shield(session.ended), 2)
    assert "expired" in session.reason
    assert world.registry.lookup(spec.session_id) is None


async def test_close_session_on_the_agent_tears_down_both_ends_within_2s(world: World) -> None:
    client = world.client()
    spec = world.spec()
    await client.open_session(spec)
    stream = await world.registry.open_tunnel_stream(spec.session_id, 0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await client.close_session(spec.session_id, "closed by the portal")
    async with asyncio.timeout(2):
        while world.registry.lookup(spec.session_id) is not None or stream.error is None:
            await asyncio.sleep(0.01)
    assert loop.time() - started < 2
    assert stream.error is not None and stream.error.code == ErrorCode.SESSION_CLOSED
    assert not await client.close_session(spec.session_id)
