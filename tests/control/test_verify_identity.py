"""``VerifyDevice`` end to end: portal service → control stream (mTLS) → agent → SNMP (UDP) to
the simulated printer → result stored on the device record."""

from __future__ import annotations

import asyncio

import pytest

from ewsgate.config import HostPort
from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, serve_snmp
from ewsgate.portal.control import InstallationOffline
from ewsgate.portal.services.access import Actor, Assignment
from ewsgate.portal.services.device_identity import verify_device_identity
from ewsgate.portal.services.errors import PermissionDenied
from ewsgate.portal.store.models import Customer, Device, Installation

from .conftest import utc_now

pytestmark = [pytest.mark.integration, pytest.mark.db]

MAC = "a0:d3:c1:4a:2b:3c"
SERIAL = "CNBRM5K0QZ"


async def add_device(db, installation_id: int, snmp_port: int, **fields) -> tuple[int, int]:
    async with db.transaction() as session:
        installation = await session.get(Installation, installation_id)
        customer = await session.get(Customer, installation.customer_id)
        values = dict(installation_id=installation_id, name="Printer", make="hp", ip="127.0.0.1",
                      mac=MAC, serial=SERIAL, ews_endpoints=[{"scheme": "http", "port": 80}],
                      identity_method="mac", snmp_version="2c", snmp_port=snmp_port,
                      snmp_community="public", created_at=utc_now(), updated_at=utc_now())
        values.update(fields)
        device = Device(**values)
        session.add(device)
        await session.flush()
        return device.id, customer.dealer_id


def actor(dealer_id: int, role: str) -> Actor:
    return Actor(user_id=1, dealer_id=dealer_id, email=f"{role}@example.com", name=role,
                 assignments=(Assignment(role, None),))


@pytest.fixture
async def printer():
    handle = await serve_snmp(SnmpAgentConfig(listen=HostPort("127.0.0.1", 0), mac=MAC,
                                              serial=SERIAL))
    yield handle
    handle.close()
    await handle.wait_closed()


async def test_verify_identity_by_mac_and_serial_and_a_mismatch(portal, enrol, agents, db,
                                                                 printer):
    enrolled = await enrol()
    agent = agents(enrolled.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    by_mac, dealer_id = await add_device(db, enrolled.installation_id, printer.address.port)
    result = await verify_device_identity(db, actor(dealer_id, "user"), by_mac, portal.hub)
    assert result["result"] == "verified", result
    assert result["seen_mac"] == MAC
    by_serial, _ = await add_device(db, enrolled.installation_id, printer.address.port,
                                    identity_method="serial")
    assert (await verify_device_identity(db, actor(dealer_id, "configurer"), by_serial,
                                         portal.hub))["result"] == "verified"
    wrong, _ = await add_device(db, enrolled.installation_id, printer.address.port,
                                mac="00:11:22:33:44:55")
    mismatch = await verify_device_identity(db, actor(dealer_id, "administrator"), wrong,
                                            portal.hub)
    assert mismatch["result"] == "mismatch" and MAC in mismatch["detail"]
    async with db.transaction() as session:
        stored = await session.get(Device, wrong)
        verified = await session.get(Device, by_mac)
    assert stored.last_identity_result == "mismatch" and stored.last_seen_mac == MAC
    assert stored.last_verified_at is None
    assert verified.last_identity_result == "verified" and verified.last_verified_at


async def test_viewer_may_not_verify_and_offline_installation_fails_clearly(
        portal, enrol, db, printer):
    enrolled = await enrol()
    device_id, dealer_id = await add_device(db, enrolled.installation_id, printer.address.port)
    with pytest.raises(PermissionDenied):
        await verify_device_identity(db, actor(dealer_id, "viewer"), device_id, portal.hub)
    portal.hub.config = type(portal.hub.config)(offline_grace=0.3)
    with pytest.raises(InstallationOffline):
        await verify_device_identity(db, actor(dealer_id, "user"), device_id, portal.hub)
    async with db.transaction() as session:
        device = await session.get(Device, device_id)
    assert device.last_identity_result == "unknown" and "offline" in device.last_identity_detail
