"""A device recorded at an address the agent never contacts: the portal's ``VerifyDevice``
goes over the real control stream (mTLS) to an agent under the production address policy,
which refuses before any packet; the refusal is stored on the device record in words, and
the UDP port standing in for the device's SNMP agent receives nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from ewsgate.agent.address_policy import AddressPolicy, parse_site_subnets
from ewsgate.portal.services.device_identity import verify_device_identity
from ewsgate.portal.store.models import Device

from .conftest import get_installation
from .test_verify_identity import actor, add_device

pytestmark = [pytest.mark.integration, pytest.mark.db]


@pytest.fixture
def snmp_listener():
    """A UDP port on 127.0.0.1 that counts what arrives (it never answers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1


@pytest.mark.parametrize(("policy", "code"), [
    (AddressPolicy(), "address.loopback"),
    (AddressPolicy(site_subnets=parse_site_subnets("10.20.0.0/24")), "address.loopback"),
])
async def test_a_loopback_device_is_refused_before_any_snmp(portal, enrol, agents, db,
                                                            snmp_listener, policy, code):
    enrolled = await enrol()
    agent = agents(enrolled.state, address_policy=policy)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    port = snmp_listener.getsockname()[1]
    device_id, dealer_id = await add_device(db, enrolled.installation_id, port)
    result = await verify_device_identity(db, actor(dealer_id, "user"), device_id, portal.hub)
    assert result["result"] == "unknown" and result["code"] == code, result
    assert result["detail"] == ("refused: 127.0.0.1 is a loopback address (this host); the "
                                "agent never contacts it; check the device's recorded IP")
    await asyncio.sleep(0.3)
    assert received(snmp_listener) == 0
    async with db.transaction() as session:
        stored = await session.get(Device, device_id)
    assert stored.last_identity_result == "unknown"
    assert stored.last_identity_detail.startswith("refused: 127.0.0.1")
    assert stored.last_verified_at is None


async def test_the_same_device_is_checked_when_the_test_switch_allows_loopback(
        portal, enrol, agents, db, snmp_listener):
    """The counter counts: with loopback allowed, SNMP reaches the listener."""
    enrolled = await enrol()
    agent = agents(enrolled.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    device_id, dealer_id = await add_device(db, enrolled.installation_id,
                                            snmp_listener.getsockname()[1])
    result = await verify_device_identity(db, actor(dealer_id, "user"), device_id, portal.hub)
    assert result["code"] == "snmp_no_answer", result
    assert received(snmp_listener) > 0


async def test_the_agent_process_obeys_its_site_subnets_and_never_allows_loopback(
        portal, enrol, db, tmp_path):
    """``ewsgate agent run --site-subnets`` as a process: its policy refuses a device outside
    the site subnets and one on loopback (the CLI has no way to allow loopback)."""
    enrolled = await enrol()
    log = (tmp_path / "agent.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ewsgate", "agent", "run", "--data-dir",
         str(enrolled.state.data_dir)],
        env={**os.environ, "EWSGATE_SITE_SUBNETS": "10.20.0.0/24"},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            installation = await get_installation(db, enrolled.installation_id)
            if installation is not None and installation.online:
                break
            assert process.poll() is None, (tmp_path / "agent.log").read_text()
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the agent process did not come online within 30 s")
        for ip, code, words in [
                ("10.30.0.5", "address.outside_site",
                 "refused: 10.30.0.5 is outside this installation's site subnets (10.20.0.0/24)"),
                ("127.0.0.1", "address.loopback", "refused: 127.0.0.1 is a loopback address")]:
            device_id, dealer_id = await add_device(db, enrolled.installation_id, 161, ip=ip)
            result = await verify_device_identity(db, actor(dealer_id, "user"), device_id,
                                                  portal.hub)
            assert result["code"] == code and result["detail"].startswith(words), result
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
    assert "site subnets: 10.20.0.0/24" in (tmp_path / "agent.log").read_text()


async def set_site_subnets(db, installation_id: int, dealer_id: int, subnets) -> None:
    """As an Administrator, through the installation service (validation included)."""
    from ewsgate.portal.services.installations import update_installation

    async with db.transaction() as session:
        await update_installation(session, actor(dealer_id, "administrator"), installation_id,
                                  {"site_subnets": subnets})


async def test_the_portals_site_subnets_confine_the_agent_over_the_control_stream(
        portal, enrol, agents, db, snmp_listener):
    """The installation's site subnets, set on the portal, travel in ``VerifyDevice`` over the
    real control stream; the agent (whose own policy would reach the device) refuses it before
    any SNMP packet and names the portal's list. Cleared, the same check reaches the port."""
    enrolled = await enrol()
    agent = agents(enrolled.state)  # loopback allowed: only the portal's list can refuse
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    device_id, dealer_id = await add_device(db, enrolled.installation_id,
                                            snmp_listener.getsockname()[1])
    await set_site_subnets(db, enrolled.installation_id, dealer_id, ["10.20.0.0/24"])
    result = await verify_device_identity(db, actor(dealer_id, "user"), device_id, portal.hub)
    assert result["result"] == "unknown" and result["code"] == "address.outside_site", result
    assert result["detail"].startswith(
        "refused: 127.0.0.1 is outside the site subnets the portal set for this installation "
        "(10.20.0.0/24); the agent never contacts it"), result
    await asyncio.sleep(0.3)
    assert received(snmp_listener) == 0
    async with db.transaction() as session:
        stored = await session.get(Device, device_id)
    assert stored.last_identity_detail.startswith("refused: 127.0.0.1 is outside")
    await set_site_subnets(db, enrolled.installation_id, dealer_id, None)
    result = await verify_device_identity(db, actor(dealer_id, "user"), device_id, portal.hub)
    assert result["code"] == "snmp_no_answer", result
    assert received(snmp_listener) > 0


async def test_the_tighter_of_the_agents_and_the_portals_subnets_wins(portal, enrol, agents,
                                                                      db):
    """Agent ``--site-subnets 10.20.0.0/16``, portal ``10.20.5.0/24``: a device inside the
    agent's list but outside the portal's is refused, and so is one the portal lists but the
    agent does not (the portal cannot widen the site's own limit)."""
    enrolled = await enrol()
    agent = agents(enrolled.state, address_policy=AddressPolicy(
        site_subnets=parse_site_subnets("10.20.0.0/16")))
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    for ip, words in [
            ("10.20.9.5", "refused: 10.20.9.5 is outside the site subnets the portal set for "
                          "this installation (10.20.5.0/24, 10.30.0.0/24)"),
            ("10.30.0.5", "refused: 10.30.0.5 is outside this installation's site subnets "
                          "(10.20.0.0/16)")]:
        device_id, dealer_id = await add_device(db, enrolled.installation_id, 161, ip=ip)
        await set_site_subnets(db, enrolled.installation_id, dealer_id,
                               ["10.20.5.0/24", "10.30.0.0/24"])
        result = await verify_device_identity(db, actor(dealer_id, "user"), device_id,
                                              portal.hub)
        assert result["code"] == "address.outside_site", result
        assert result["detail"].startswith(words), result
