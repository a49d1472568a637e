"""The hub's bookkeeping against an in-memory stand-in for the database: liveness, presence
batching, revocation by the sweep, delivery of queued commands to the next stream."""

from __future__ import annotations

import asyncio
import datetime as dt

from ewsgate.portal.control.hub import Connection, ControlHub, HubConfig
from ewsgate.portal.control.records import Refusal

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


class MemoryRecords:
    def __init__(self) -> None:
        self.presence: dict[int, bool] = {}
        self.presence_writes = 0
        self.refused: dict[int, Refusal] = {}
        self.touched: list[list[int]] = []
        self.commands: dict[str, str] = {}

    async def apply_presence(self, changes):
        self.presence_writes += 1
        for installation_id, (online, _version, _at) in changes.items():
            self.presence[installation_id] = online

    async def refused_among(self, streams):
        return {i: r for i, r in self.refused.items() if i in streams}

    async def touch(self, ids, now):
        self.touched.append(sorted(ids))

    async def mark_stale_offline(self, older_than):
        return None

    async def record_command(self, command_id, installation_id, kind, payload, now):
        self.commands[command_id] = "pending"

    async def set_command_status(self, command_id, status):
        self.commands[command_id] = status

    async def finish_command(self, command_id, status, result, now):
        self.commands[command_id] = status


def connection(installation_id: int, at: float = 0.0) -> Connection:
    return Connection(installation_id=installation_id, cert_serial="ab", peer="test",
                      connected_at=at, last_message_at=at)


async def test_silent_stream_is_closed_after_three_heartbeats():
    hub = ControlHub(MemoryRecords(), config=HubConfig(heartbeat_interval=2.0),
                     clock=lambda: NOW)
    quiet, chatty = connection(1, at=0.0), connection(2, at=0.0)
    await hub.attach(quiet)
    await hub.attach(chatty)
    chatty.last_message_at = 5.0
    hub.cut_silent(6.5)
    assert quiet.closing is not None and quiet.closing.code == "heartbeat_timeout"
    assert chatty.closing is None


async def test_presence_is_written_in_one_batch_and_the_last_change_wins():
    records = MemoryRecords()
    hub = ControlHub(records, clock=lambda: NOW)
    first = connection(1)
    for installation_id in range(1, 50):
        await hub.attach(first if installation_id == 1 else connection(installation_id))
    await hub.detach(first)
    await hub.flush_presence()
    assert records.presence_writes == 1
    assert records.presence[1] is False and records.presence[49] is True


async def test_sweep_cuts_revoked_streams_and_touches_the_rest():
    records = MemoryRecords()
    hub = ControlHub(records, clock=lambda: NOW)
    revoked, fine = connection(1), connection(2)
    await hub.attach(revoked)
    await hub.attach(fine)
    records.refused[1] = Refusal("installation_deleted", "PERMISSION_DENIED", "gone")
    await hub.sweep_once(0.0)
    assert revoked.closing.code == "installation_deleted" and fine.closing is None
    assert records.touched == [[2]]


async def test_newer_stream_replaces_the_older_one():
    hub = ControlHub(MemoryRecords(), clock=lambda: NOW)
    old, new = connection(1), connection(1)
    await hub.attach(old)
    await hub.attach(new)
    assert old.closing.code == "stream_replaced" and hub._connections[1] is new
    await hub.detach(old)  # the old stream ending must not take the new one offline
    assert hub.is_online(1)


async def test_command_not_written_before_a_drop_goes_down_the_next_stream():
    records = MemoryRecords()
    hub = ControlHub(records, clock=lambda: NOW)
    first = connection(7)
    await hub.attach(first)
    pending = asyncio.create_task(hub.send_command(7, "Ping", {}, timeout=5))
    await asyncio.sleep(0.01)
    message, command_id = hub.take(first)
    hub.sent(command_id, written=False)  # the write failed: the stream is gone
    await hub.detach(first)
    second = connection(7)
    await hub.attach(second)
    again, same_id = hub.take(second)
    assert same_id == command_id and again.command.id == message.command.id
    hub.sent(same_id, written=True)
    from ewsgate.proto import control_pb2 as pb

    hub.on_result(second, pb.CommandResult(command_id=command_id, status=pb.CommandResult.OK,
                                           payload_json=b'{"pong": true}'))
    assert await pending == {"pong": True}
    assert records.commands[command_id] == "ok"


async def test_result_from_another_installation_is_ignored():
    hub = ControlHub(MemoryRecords(), clock=lambda: NOW)
    target, intruder = connection(1), connection(2)
    await hub.attach(target)
    await hub.attach(intruder)
    pending = asyncio.create_task(hub.send_command(1, "Ping", {}, timeout=0.3))
    await asyncio.sleep(0.01)
    _, command_id = hub.take(target)
    hub.sent(command_id, written=True)
    from ewsgate.proto import control_pb2 as pb

    hub.on_result(intruder, pb.CommandResult(command_id=command_id,
                                             status=pb.CommandResult.OK, payload_json=b"{}"))
    try:
        await pending
    except Exception as exc:
        assert type(exc).__name__ == "CommandTimedOut"
    else:
        raise AssertionError("a result from another installation was accepted")


async def test_disconnect_for_a_replaced_certificate_cuts_only_the_stream_that_presented_it():
    """After a re-enrolment the old certificate's stream ends at once; a stream that already
    presents the new certificate is left alone."""
    hub = ControlHub(MemoryRecords(), clock=lambda: NOW)
    old = connection(1)
    await hub.attach(old)
    assert hub.disconnect(1, "replaced", cert_serial="cd") is False
    assert old.closing is None
    assert hub.disconnect(1, "replaced by a new enrolment", cert_serial="ab") is True
    assert old.closing is not None and "new enrolment" in old.closing.message


async def test_a_crashed_replicas_installations_go_offline_within_two_heartbeats(db) -> None:
    """Another replica's sweep repairs the rows of a replica that died: by the age of the last
    refresh (two heartbeat intervals), not ten seconds of the row's age."""
    from sqlalchemy import select

    from ewsgate.portal.control.records import ControlRecords
    from ewsgate.portal.store.models import Installation

    from .conftest import new_installation

    fresh, crashed = await new_installation(db), await new_installation(db)
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    records = ControlRecords(db)
    await records.apply_presence({fresh: (True, "1", now - dt.timedelta(seconds=3)),
                                  crashed: (True, "1", now - dt.timedelta(seconds=5.5))})
    config = HubConfig()  # heartbeat 2.5 s, refreshed every 2 s
    assert config.stale_limit == 5.0
    survivor = ControlHub(records, config=config, clock=lambda: now)
    await survivor.sweep_once(0.0)
    async with db.transaction() as session:
        online = dict((await session.execute(
            select(Installation.id, Installation.online))).all())
    assert online[fresh] is True and online[crashed] is False
