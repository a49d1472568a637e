"""Commands over the real control stream: round trips, progress, failures, offline, reconnects."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from ewsgate.agent.control_client import CommandFailure
from ewsgate.portal.control import (
    CommandFailed,
    CommandRefused,
    CommandTimedOut,
    InstallationOffline,
)
from ewsgate.portal.control.records import Refusal
from ewsgate.portal.store.models import ControlCommand
from ewsgate.proto import control_pb2 as pb

from .conftest import eventually, get_installation, utc_now

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def test_ping_round_trip_marks_online_and_records_the_command(portal, enrol, agents, db):
    enrolled = await enrol()
    agent = agents(enrolled.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    await eventually(lambda: portal.hub.is_online(enrolled.installation_id))

    async def online():
        return (await get_installation(db, enrolled.installation_id)).online

    await eventually(online, timeout=3)
    row = await get_installation(db, enrolled.installation_id)
    assert row.online and row.agent_version == "test" and row.last_seen_at is not None
    result = await portal.hub.send_command(enrolled.installation_id, "Ping", {"echo": "hi"},
                                           timeout=5)
    assert result["pong"] is True and result["echo"] == "hi"
    async with db.transaction() as session:
        commands = (await session.scalars(select(ControlCommand))).all()
    assert [(c.kind, c.status) for c in commands] == [("Ping", "ok")]
    assert commands[0].result["echo"] == "hi"


async def test_progress_reports_reach_the_callback(portal, enrol, agents):
    enrolled = await enrol()

    async def slow(ctx):
        ctx.progress("snmp", "asking 10.0.0.5")
        ctx.progress("arp", "looking in the neighbour table")
        return {"done": True}

    agent = agents(enrolled.state, {"Slow": slow})
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    seen = []
    result = await portal.hub.send_command(enrolled.installation_id, "Slow", {}, timeout=5,
                                           on_progress=lambda p: seen.append((p.stage, p.detail)))
    assert result == {"done": True}
    assert seen == [("snmp", "asking 10.0.0.5"), ("arp", "looking in the neighbour table")]


async def test_handler_failure_and_unknown_kind_are_reported_with_codes(portal, enrol, agents):
    enrolled = await enrol()

    async def broken(ctx):
        raise CommandFailure("device_unreachable", "10.0.0.5 did not answer")

    agent = agents(enrolled.state, {"Broken": broken})
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    with pytest.raises(CommandFailed) as failed:
        await portal.hub.send_command(enrolled.installation_id, "Broken", {}, timeout=5)
    assert failed.value.code == "device_unreachable" and "did not answer" in failed.value.message
    with pytest.raises(CommandRefused) as refused:
        await portal.hub.send_command(enrolled.installation_id, "NoSuchKind", {}, timeout=5)
    assert refused.value.code == "unknown_command"


async def test_command_to_an_offline_installation_fails_clearly_after_the_grace(portal, enrol):
    enrolled = await enrol()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(InstallationOffline) as info:
        await portal.hub.send_command(enrolled.installation_id, "Ping", {}, timeout=1.0)
    assert loop.time() - started < 3
    assert info.value.code == "installation_offline" and "offline" in info.value.message


async def test_command_sent_before_the_agent_connects_is_delivered(portal, enrol, agents):
    enrolled = await enrol()
    pending = asyncio.create_task(
        portal.hub.send_command(enrolled.installation_id, "Ping", {"echo": 1}, timeout=8))
    await asyncio.sleep(0.5)
    assert not pending.done()
    agents(enrolled.state)
    assert (await asyncio.wait_for(pending, 10))["echo"] == 1


async def test_result_of_a_command_running_across_a_reconnect_is_not_lost(
        portal, enrol, agents):
    """The stream drops while the agent works; the result goes down the next stream."""
    enrolled = await enrol()
    release = asyncio.Event()

    async def long(ctx):
        await release.wait()
        return {"finished": True}

    agent = agents(enrolled.state, {"Long": long})
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    pending = asyncio.create_task(
        portal.hub.send_command(enrolled.installation_id, "Long", {}, timeout=10))
    connection = portal.hub._connections[enrolled.installation_id]
    await eventually(lambda: agent.client._tasks)
    connection.close(Refusal("test_cut", "UNAVAILABLE", "cut by the test"))
    await eventually(lambda: portal.hub._connections.get(enrolled.installation_id)
                     not in (None, connection))
    assert agent.client.connects >= 2
    release.set()
    assert await asyncio.wait_for(pending, 10) == {"finished": True}


async def test_command_written_to_a_stream_that_dies_for_good_times_out_clearly(
        portal, enrol, agents):
    enrolled = await enrol()
    started = asyncio.Event()

    async def hang(ctx):
        started.set()
        await asyncio.sleep(60)
        return {}

    agent = agents(enrolled.state, {"Hang": hang})
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    pending = asyncio.create_task(
        portal.hub.send_command(enrolled.installation_id, "Hang", {}, timeout=2))
    await asyncio.wait_for(started.wait(), 5)
    await agent.stop()
    with pytest.raises(CommandTimedOut) as info:
        await pending
    assert "connection was lost" in info.value.message and "unknown" in info.value.message


async def test_replayed_command_id_is_refused_by_the_agent(portal, enrol, agents):
    enrolled = await enrol()
    runs = []

    async def count(ctx):
        runs.append(ctx.id)
        return {"n": len(runs)}

    agent = agents(enrolled.state, {"Count": count})
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    hub = portal.hub
    first = asyncio.create_task(
        hub.send_command(enrolled.installation_id, "Count", {}, timeout=5))
    await eventually(lambda: runs)
    assert await first == {"n": 1}
    replay = pb.PortalMessage(command=pb.Command(
        id=runs[0], kind="Count", payload_json=b"{}",
        deadline_unix_ms=int((utc_now().timestamp() + 30) * 1000)))
    results = []
    original = hub.on_result
    hub.on_result = lambda connection, result: results.append(result)  # observe the answer
    try:
        hub._connections[enrolled.installation_id].push(replay)
        await eventually(lambda: results)
    finally:
        hub.on_result = original
    assert results[0].status == pb.CommandResult.REFUSED
    assert results[0].error_code == "replayed_command"
    assert runs == [runs[0]]


async def test_command_to_an_unknown_installation_is_not_found(portal):
    from ewsgate.portal.services.errors import NotFound

    with pytest.raises(NotFound):
        await portal.hub.send_command(999_999, "Ping", {}, timeout=1)


async def test_failed_and_offline_commands_are_recorded_with_short_statuses(portal, enrol, db):
    enrolled = await enrol()
    portal.hub.config = type(portal.hub.config)(offline_grace=0.2)
    with pytest.raises(InstallationOffline):
        await portal.hub.send_command(enrolled.installation_id, "Ping", {}, timeout=1)
    async with db.transaction() as session:
        command = await session.scalar(select(ControlCommand))
    assert command.status == "offline"
    assert command.result["error_code"] == "installation_offline"
