"""What the portal keeps of a command and of what peers say: no tunnel ticket, SNMP community or
SNMPv3 key in ``control_commands`` or in ``devices`` in the clear (raw rows read back), and
text chosen by a device or an agent escaped and capped before it is logged or stored.

Real control server and agent (mTLS over 127.0.0.1), real SNMP over UDP to the simulated
printer, the rows read with plain SQL rather than through the models."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text

from ewsgate.agent.control_client import CommandFailure
from ewsgate.config import HostPort
from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, serve_snmp
from ewsgate.portal.control import CommandFailed
from ewsgate.portal.services.device_identity import verify_device_identity
from ewsgate.portal.store.models import Device

from .test_verify_identity import MAC, SERIAL, actor, add_device

pytestmark = [pytest.mark.integration, pytest.mark.db]

AUTH_KEY = "auth-key-Zq81-never-stored"
PRIV_KEY = "priv-key-Yp72-never-stored"
COMMUNITY = "community-Xo63-never-stored"
TICKET = "eyJ0aWNrZXQiOiJsaXZlIn0.never-stored.signature"
HOSTILE = "\x1b[2J\x1b]0;owned\x07\u202e\nERROR forged log line\r"
#: an SNMP OCTET STRING is bytes: the ASCII part of it
HOSTILE_BYTES = "\x1b[2J\x1b]0;owned\x07\x00\x7f\nERROR forged log line\r"


async def raw_rows(db, sql: str) -> list[tuple]:
    async with db.engine.connect() as connection:
        return [tuple(row) for row in (await connection.execute(text(sql))).all()]


@pytest.fixture
async def v3_printer():
    handle = await serve_snmp(SnmpAgentConfig(
        listen=HostPort("127.0.0.1", 0), mac=MAC, serial=SERIAL, community=COMMUNITY,
        v3_user="tech", v3_auth_key=AUTH_KEY, v3_priv_key=PRIV_KEY))
    yield handle
    handle.close()
    await handle.wait_closed()


async def test_no_snmp_secret_or_ticket_is_stored_in_the_clear(portal, enrol, agents, db,
                                                               v3_printer):
    enrolled = await enrol()
    seen: list[dict] = []

    async def open_session(ctx):
        seen.append(ctx.payload)
        return {"accepted": True, "ticket": ctx.payload["ticket"]}

    agent = agents(enrolled.state, {"OpenSession": open_session})
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    v3, dealer_id = await add_device(
        db, enrolled.installation_id, v3_printer.address.port, snmp_version="3",
        snmp_v3_user="tech", snmp_v3_auth_key=AUTH_KEY, snmp_v3_priv_key=PRIV_KEY,
        snmp_v3_auth_protocol="sha", snmp_v3_priv_protocol="aes", snmp_community=None)
    v2, _ = await add_device(db, enrolled.installation_id, v3_printer.address.port,
                             snmp_community=COMMUNITY)
    for device_id in (v3, v2):  # the real identity check works with the sealed secrets
        result = await verify_device_identity(db, actor(dealer_id, "user"), device_id,
                                              portal.hub)
        assert result["result"] == "verified", result
    await portal.hub.send_command(enrolled.installation_id, "OpenSession",
                                  {"ticket": TICKET, "identity": {"snmp": {
                                      "community": COMMUNITY, "v3_auth_key": AUTH_KEY,
                                      "v3_priv_key": PRIV_KEY}}}, timeout=5)
    assert seen[0]["ticket"] == TICKET  # the agent got it whole

    commands = await raw_rows(db, "SELECT kind, payload, result FROM control_commands")
    assert sorted(kind for kind, *_ in commands) == ["OpenSession", "VerifyDevice",
                                                     "VerifyDevice"]
    devices = await raw_rows(db, "SELECT snmp_community, snmp_v3_auth_key, snmp_v3_priv_key "
                                 "FROM devices")
    everything = repr(commands) + repr(devices)
    for secret in (AUTH_KEY, PRIV_KEY, COMMUNITY, TICKET):
        assert secret not in everything
    import hashlib

    digest = hashlib.sha256(TICKET.encode()).hexdigest()
    assert f"sha256:{digest}" in repr(commands)  # still matchable with a ticket seen elsewhere
    assert all(value is None or value.startswith("ewsk1:")
               for row in devices for value in row)


async def test_finished_commands_are_pruned_after_the_retention(portal, enrol, agents, db):
    import datetime as dt

    enrolled = await enrol()
    agent = agents(enrolled.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    for _ in range(3):
        await portal.hub.send_command(enrolled.installation_id, "Ping", {}, timeout=5)
    pending = asyncio.ensure_future(portal.hub.send_command(enrolled.installation_id, "Ping",
                                                            {}, timeout=5))
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    assert await portal.records.prune_commands(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)) \
        == 0
    await pending
    assert await portal.records.prune_commands(future) == 4
    assert await raw_rows(db, "SELECT id FROM control_commands") == []


@pytest.mark.parametrize("serial", [
    pytest.param((HOSTILE_BYTES + "A" * 200) * 45, id="ansi-escapes-10kB"),
    pytest.param(("[2J]0;owned ERROR forged " + "A" * 200) * 45, id="printable-10kB"),
])
async def test_a_hostile_snmp_serial_is_escaped_and_capped_in_the_stored_detail(
        portal, enrol, agents, db, caplog, serial):
    caplog.set_level(logging.INFO)
    config = SnmpAgentConfig(listen=HostPort("127.0.0.1", 0), mac=MAC, serial=SERIAL)
    object.__setattr__(config, "serial", serial)  # what a hostile device answers
    handle = await serve_snmp(config)
    try:
        enrolled = await enrol()
        agent = agents(enrolled.state)
        await asyncio.wait_for(agent.client.connected.wait(), 10)
        device_id, dealer_id = await add_device(db, enrolled.installation_id,
                                                handle.address.port, identity_method="serial")
        result = await verify_device_identity(db, actor(dealer_id, "user"), device_id,
                                              portal.hub)
    finally:
        handle.close()
        await handle.wait_closed()
    assert result["result"] in ("mismatch", "unknown"), result
    async with db.transaction() as session:
        stored = await session.get(Device, device_id)
    for value in (stored.last_identity_detail, stored.last_seen_serial or "", result["detail"]):
        assert "\x1b" not in value and "\n" not in value and "\x07" not in value
    assert len(stored.last_identity_detail) <= 2000
    assert len(stored.last_seen_serial or "") <= 128
    [(row,)] = await raw_rows(db, "SELECT result FROM control_commands")
    assert "\x1b" not in row and "\\u001b" not in row and len(row) < 6000
    assert all("\x1b" not in r.getMessage() and len(r.getMessage()) < 2500
               for r in caplog.records)
    if "\x1b" not in serial:  # printable: the agent reports it as found, and it is capped
        assert result["result"] == "mismatch"
        assert "more]" in stored.last_identity_detail


async def test_a_hostile_agent_error_is_escaped_and_capped(portal, enrol, agents, db):
    enrolled = await enrol()

    async def fail(ctx):
        raise CommandFailure("bad\x1bcode" + "c" * 200, HOSTILE + "E" * 10_000)

    agent = agents(enrolled.state, {"Hostile": fail})
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    with pytest.raises(CommandFailed) as info:
        await portal.hub.send_command(enrolled.installation_id, "Hostile", {}, timeout=5)
    assert "\x1b" not in info.value.message and "\n" not in info.value.message
    assert len(info.value.message) < 2100 and "more]" in info.value.message
    assert "\x1b" not in info.value.code and len(info.value.code) <= 64
    [(row,)] = await raw_rows(db, "SELECT result FROM control_commands")
    assert "\x1b" not in row and "\\u001b" not in row and len(row) < 6000
