"""Two portal replicas on one database and a real nats-server: any replica reaches any agent.

Replica A and replica B are two real control servers (grpcio, mTLS on 127.0.0.1) sharing the
database and the CA; each has its own :class:`NatsRouter`. The agent holds its stream on B;
commands are issued on A.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select

from ewsgate import pki
from ewsgate.agent.control_client import CommandFailure
from ewsgate.agent.enroll import EnrolOptions, enroll
from ewsgate.agent.state import AgentState
from ewsgate.config import HostPort
from ewsgate.portal.control import (
    CommandFailed,
    ControlServer,
    ControlServerConfig,
    HubConfig,
    InstallationOffline,
)
from ewsgate.portal.control.replica_messages import (
    MESSAGE_VERSION,
    CommandReply,
    CommandRequest,
    MessageError,
    command_subject,
    parse_reply,
    parse_request,
)
from ewsgate.portal.control.routing import InProcessRouter, NatsRouter
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import ControlCommand

from .conftest import FAST_HUB, eventually, new_installation, new_token, utc_now
from .nats_server import running_nats

pytestmark = [pytest.mark.integration, pytest.mark.db]

#: a long offline grace: a router that waited for it instead of answering at once would hang
SLOW_GRACE = HubConfig(heartbeat_interval=0.5, missed_heartbeats=3, sweep_interval=0.1,
                       db_sweep_interval=0.2, offline_grace=120.0, stale_after=3.0)


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    with running_nats() as url:
        yield url


@pytest.fixture
async def replica_b(db: Database, ca: pki.CertificateAuthority) -> AsyncIterator[ControlServer]:
    server = ControlServer(ControlServerConfig(listen="127.0.0.1:0", enrol_listen="127.0.0.1:0",
                                               hub=FAST_HUB),
                           database=db, ca=ca, clock=utc_now)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0.2)


@pytest.fixture
async def routers(portal: ControlServer, replica_b: ControlServer,
                  nats_url: str) -> AsyncIterator[tuple[NatsRouter, NatsRouter]]:
    a = NatsRouter(lambda: portal.hub, nats_url, replica="a")
    b = NatsRouter(lambda: replica_b.hub, nats_url, replica="b")
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def _agent_on(server: ControlServer, db: Database, ca: pki.CertificateAuthority,
                    tmp_path, agents, handlers=None):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    state = AgentState(tmp_path / f"agent-{installation_id}")
    await enroll(EnrolOptions(portal=HostPort("127.0.0.1", server.enrol_port or 0),
                              token=token, agent_version="test"), state)
    agent = agents(state, handlers)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    await eventually(lambda: server.hub.is_online(installation_id))
    return installation_id, agent


async def test_command_issued_on_replica_a_reaches_the_agent_held_by_replica_b(
        portal, replica_b, routers, db, ca, tmp_path, agents):
    router_a, router_b = routers
    installation_id, _ = await _agent_on(replica_b, db, ca, tmp_path, agents)
    await eventually(lambda: router_b.holds_subscription(installation_id))
    assert not portal.hub.is_online(installation_id)

    result = await router_a.send_command(installation_id, "Ping", {"echo": "via A"}, timeout=5)

    assert result["pong"] is True and result["echo"] == "via A"
    async with db.transaction() as session:
        commands = (await session.scalars(select(ControlCommand))).all()
    assert [(c.installation_id, c.kind, c.status) for c in commands] == [
        (installation_id, "Ping", "ok")]


async def test_progress_and_agent_errors_cross_replicas_unchanged(
        portal, replica_b, routers, db, ca, tmp_path, agents):
    async def slow(ctx):
        ctx.progress("snmp", "asking 10.0.0.5")
        return {"done": True}

    async def broken(ctx):
        raise CommandFailure("identity_mismatch", "expected serial A, found B")

    router_a, router_b = routers
    installation_id, _ = await _agent_on(replica_b, db, ca, tmp_path, agents,
                                         {"Slow": slow, "Broken": broken})
    await eventually(lambda: router_b.holds_subscription(installation_id))
    seen = []
    result = await router_a.send_command(installation_id, "Slow", {}, timeout=5,
                                         on_progress=lambda p: seen.append((p.stage, p.detail)))
    assert result == {"done": True}
    assert seen == [("snmp", "asking 10.0.0.5")], "every note arrives before the result"
    with pytest.raises(CommandFailed) as failure:
        await router_a.send_command(installation_id, "Broken", {}, timeout=5)
    assert failure.value.code == "identity_mismatch"
    assert "expected serial A, found B" in failure.value.message


async def test_no_replica_holding_the_stream_is_offline_at_once(db, ca, nats_url):
    """"No responders" is the offline answer: no waiting for the hub's offline grace."""
    lonely = ControlServer(ControlServerConfig(listen="127.0.0.1:0", enrol_listen=None,
                                               hub=SLOW_GRACE),
                           database=db, ca=ca, clock=utc_now)
    await lonely.start()
    router = NatsRouter(lambda: lonely.hub, nats_url, replica="lonely")
    await router.start()
    try:
        installation_id = await new_installation(db)
        with pytest.raises(InstallationOffline) as offline:
            await asyncio.wait_for(router.send_command(installation_id, "Ping", {}, timeout=60),
                                   10)
        assert offline.value.code == "installation_offline"
        assert f"installation {installation_id} is offline" in offline.value.message
    finally:
        await router.stop()
        await lonely.stop(0.2)


async def test_the_holder_unsubscribes_when_the_stream_ends(
        portal, replica_b, routers, db, ca, tmp_path, agents):
    router_a, router_b = routers
    installation_id, agent = await _agent_on(replica_b, db, ca, tmp_path, agents)
    await eventually(lambda: router_b.holds_subscription(installation_id))
    await agent.stop()
    await eventually(lambda: not router_b.holds_subscription(installation_id))
    with pytest.raises(InstallationOffline):
        await asyncio.wait_for(router_a.send_command(installation_id, "Ping", {}, timeout=5), 10)


async def test_a_message_of_another_version_is_refused_by_the_holder(
        portal, replica_b, routers, db, ca, tmp_path, agents):
    import nats

    _, router_b = routers
    installation_id, _ = await _agent_on(replica_b, db, ca, tmp_path, agents)
    await eventually(lambda: router_b.holds_subscription(installation_id))
    client = await nats.connect(router_b.broker_url)
    try:
        future = {"v": MESSAGE_VERSION + 1, "type": "command",
                  "installation_id": installation_id, "kind": "Ping", "payload": {},
                  "timeout": 5}
        answer = await client.request(command_subject(installation_id),
                                      json.dumps(future).encode(), timeout=5)
        reply = parse_reply(answer.data)
        assert not reply.ok and reply.error_code == "bad_message"
        assert f"version {MESSAGE_VERSION + 1}" in reply.error_message
        # a request naming another installation than its subject is refused too
        wrong = CommandRequest(installation_id=installation_id + 1000, kind="Ping", payload={},
                               timeout=5).encode()
        reply = parse_reply((await client.request(command_subject(installation_id), wrong,
                                                  timeout=5)).data)
        assert not reply.ok and reply.error_code == "bad_message"
    finally:
        await client.close()
    async with db.transaction() as session:
        assert (await session.scalars(select(ControlCommand))).all() == []


async def test_in_process_router_serves_the_same_interface(portal, enrol, agents):
    enrolled = await enrol()
    agent = agents(enrolled.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    router = InProcessRouter(lambda: portal.hub)
    result = await router.send_command(enrolled.installation_id, "Ping", {"echo": "local"},
                                       timeout=5)
    assert result["echo"] == "local"
    with pytest.raises(InstallationOffline):
        await InProcessRouter(lambda: None).send_command(enrolled.installation_id, "Ping")


def test_replica_messages_round_trip_and_reject_garbage():
    request = CommandRequest(installation_id=7, kind="OpenSession", payload={"a": 1},
                             timeout=30, progress_to="_INBOX.x", origin="a")
    assert parse_request(request.encode()) == request
    reply = CommandReply(ok=False, error_class="CommandFailed", error_code="x",
                         error_message="y", holder="b")
    assert parse_reply(reply.encode()) == reply
    for bad in (b"not json", b"[]", b'{"v": 1, "type": "reply"}',
                b'{"v": 1, "type": "command", "installation_id": "7", "kind": "Ping", '
                b'"payload": {}, "timeout": 5}',
                b'{"v": 1, "type": "command", "installation_id": 7, "kind": "rm -rf", '
                b'"payload": {}, "timeout": 5}'):
        with pytest.raises(MessageError):
            parse_request(bad)
    with pytest.raises(MessageError):
        CommandReply(ok=False, error_class="SystemExit")


async def test_a_broker_that_does_not_answer_stops_the_router_with_the_reason() -> None:
    router = NatsRouter(lambda: None, "nats://127.0.0.1:1", replica="x", connect_timeout=0.5)
    with pytest.raises(RuntimeError, match=r"cannot connect to NATS.*start nats-server"):
        await asyncio.wait_for(router.start(), 10)


def test_the_broker_url_must_be_nats() -> None:
    from ewsgate.portal.options import parse_broker_url

    assert parse_broker_url(" nats://a:4222, nats://b:4222 ") == "nats://a:4222,nats://b:4222"
    for bad in ("", "http://a:4222", "nats://", "a:4222"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)
