"""Certificate renewal over the control stream at two thirds of the certificate's life."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest

from ewsgate import pki

from .conftest import eventually, get_installation, utc_now
from .test_mtls import open_stream

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def test_agent_renews_at_two_thirds_of_life_and_the_old_certificate_is_then_refused(
        portal, enrol, agents, db, ca):
    enrolled = await enrol()
    old = enrolled.identity
    # the agent's clock says 21 days have passed: past 2/3 of the 30-day certificate
    skew = dt.timedelta(days=21)
    agent = agents(enrolled.state, clock=lambda: utc_now() + skew)
    await eventually(lambda: enrolled.state.load().serial != old.serial, timeout=10)
    new = enrolled.state.load()
    assert pki.is_issued_by(new.cert, ca.cert)
    assert new.key_pem != old.key_pem
    assert pki.installation_id_from_cert(new.cert) == str(enrolled.installation_id)
    # the agent reconnects with the new certificate, which the portal adopts as current
    await eventually(lambda: agent.client.connects >= 2 and agent.client.connected.is_set())
    row = await get_installation(db, enrolled.installation_id)
    assert row.cert_serial == new.serial
    assert row.cert_not_after == new.not_after
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await open_stream(portal.port, ca.cert_pem, old.key_pem, old.cert_pem)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_agent_does_not_renew_early(portal, enrol, agents):
    enrolled = await enrol()
    agent = agents(enrolled.state, clock=lambda: utc_now() + dt.timedelta(days=19))
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    await asyncio.sleep(0.6)  # three renewal checks
    assert enrolled.state.load().serial == enrolled.identity.serial
    assert agent.client.connects == 1


async def test_portal_can_order_a_renewal_with_a_command(portal, enrol, agents, db):
    enrolled = await enrol()
    reloaded = []
    agent = agents(enrolled.state, on_renewed=lambda: reloaded.append(True))
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    result = await portal.hub.send_command(enrolled.installation_id, "RenewCertificate", {},
                                           timeout=10)
    assert result["serial"] != enrolled.identity.serial
    assert reloaded == [True]  # e.g. the tunnel client reloads its TLS context
    assert enrolled.state.load().serial == result["serial"]
    await eventually(lambda: agent.client.connects >= 2 and agent.client.connected.is_set())
    assert (await get_installation(db, enrolled.installation_id)).cert_serial == result["serial"]
