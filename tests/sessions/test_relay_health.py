"""Relay liveness: placement only on live relays, lost relays fail their sessions, stopped
relays end theirs, and two replicas sweeping at once move each session once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ewsgate.portal.services.errors import Conflict
from ewsgate.portal.sessions.relay_health import (
    Liveness,
    RelayHealthConfig,
    liveness,
    record_heartbeat,
)
from ewsgate.portal.store.models import Job, Relay
from sessions.rt_world import RtWorld, settle

pytestmark = pytest.mark.db


@pytest.fixture(autouse=True)
async def _room_for_several_sessions(rt: RtWorld) -> None:
    """These tests open several sessions of one user on one device (placement, not quotas)."""
    await rt.set_policy(max_sessions_per_device=8, max_sessions_per_user_per_device=8)


async def _beat(rt: RtWorld, name: str, state: str = "serving") -> None:
    async with rt.db.transaction() as s:
        relay = await s.get(Relay, rt.relays[name])
        assert relay is not None
        deadline = rt.clock.now + timedelta(minutes=10) if state == "draining" else None
        await record_heartbeat(s, relay, state, rt.clock.now, deadline)


async def _open(rt: RtWorld) -> tuple[str, int, int | None]:
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    return view.session_id, view.job_id, view.relay_id


def test_health_config_refuses_a_timeout_shorter_than_two_heartbeats() -> None:
    with pytest.raises(ValueError, match="at least twice the interval"):
        RelayHealthConfig(interval=5, timeout=9)


async def test_sessions_go_only_to_heartbeating_relays(rt: RtWorld) -> None:
    await _beat(rt, "relay-y")  # relay-x never heartbeats: it is legacy, not chosen
    for _ in range(3):
        _sid, _job, relay_id = await _open(rt)
        assert relay_id == rt.relays["relay-y"]


async def test_a_draining_relay_gets_no_new_session(rt: RtWorld) -> None:
    await _beat(rt, "relay-x")
    await _beat(rt, "relay-y", "draining")
    for _ in range(2):
        assert (await _open(rt))[2] == rt.relays["relay-x"]
    await _beat(rt, "relay-x", "draining")
    with pytest.raises(Conflict) as caught:
        await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    assert caught.value.code == "no_relay"
    assert "'relay-x' is draining" in caught.value.message


async def test_a_lost_relay_fails_its_sessions_with_the_reason_and_new_ones_go_elsewhere(
        rt: RtWorld) -> None:
    await _beat(rt, "relay-x")
    await _beat(rt, "relay-y")
    opened = [await _open(rt) for _ in range(4)]
    on_x = [o for o in opened if o[2] == rt.relays["relay-x"]]
    on_y = [o for o in opened if o[2] == rt.relays["relay-y"]]
    assert len(on_x) == 2 and len(on_y) == 2
    timeout = rt.sessions.relay_health.timeout
    rt.clock.advance(timeout - 1)
    await _beat(rt, "relay-y")  # relay-x falls silent
    await rt.sessions.sweep()
    actor = await rt.actor("tech")
    assert [(await rt.sessions.get(actor, sid)).status for sid, _j, _r in opened] \
        == ["ready"] * 4
    rt.clock.advance(2)  # relay-x's last heartbeat is now older than the timeout
    await rt.sessions.sweep()
    await settle(rt)
    actor = await rt.actor("tech")
    for sid, job_id, _relay in on_x:
        view = await rt.sessions.get(actor, sid)
        assert view.status == "failed"
        assert view.reason is not None and view.reason.startswith("relay_lost: relay 'relay-x'")
        async with rt.db.transaction() as s:
            job = await s.get(Job, job_id)
            assert job is not None and job.status == "failed"
            assert job.error is not None and "relay_lost" in job.error
    for sid, _j, _r in on_y:
        assert (await rt.sessions.get(actor, sid)).status == "ready"
    assert [c.payload["session_id"] for c in rt.hub.sent if c.kind == "CloseSession"] \
        == [sid for sid, _j, _r in on_x]
    assert (await _open(rt))[2] == rt.relays["relay-y"]


async def test_a_stopped_relay_ends_its_live_sessions_as_planned(rt: RtWorld) -> None:
    await _beat(rt, "relay-x")
    sid, _job, relay_id = await _open(rt)
    assert relay_id == rt.relays["relay-x"]
    await _beat(rt, "relay-x", "stopped")
    await rt.sessions.sweep()
    view = await rt.sessions.get(await rt.actor("tech"), sid)
    assert view.status == "ended"
    assert view.reason is not None and view.reason.startswith("relay_drained:")


async def test_two_replicas_sweeping_at_once_move_each_session_once(rt: RtWorld) -> None:
    await _beat(rt, "relay-x")
    opened = [await _open(rt) for _ in range(3)]
    rt.clock.advance(rt.sessions.relay_health.timeout + 1)
    moved = await asyncio.gather(rt.sessions.fail_lost_relays(),
                                 rt.sessions.fail_lost_relays())
    assert sum(moved) == len(opened)


async def test_liveness_table(rt: RtWorld) -> None:
    async with rt.db.transaction() as s:
        relay = await s.get(Relay, rt.relays["relay-x"])
        assert relay is not None
        assert liveness(relay, rt.clock.now, 15) is Liveness.LEGACY
        await record_heartbeat(s, relay, "serving", rt.clock.now)
        assert liveness(relay, rt.clock.now + timedelta(seconds=15), 15) is Liveness.ALIVE
        assert liveness(relay, rt.clock.now + timedelta(seconds=16), 15) is Liveness.LOST
        with pytest.raises(ValueError, match="not one of"):
            await record_heartbeat(s, relay, "asleep", rt.clock.now)
