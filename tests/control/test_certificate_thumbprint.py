"""The portal records the installation certificate's x5t#S256 (tunnel tickets are bound to it),
and a re-enrolment revokes the superseded certificate for the relays."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update

from ewsgate.agent.enroll import EnrolOptions, enroll
from ewsgate.agent.state import AgentState
from ewsgate.config import HostPort
from ewsgate.portal.store.models import Installation, InstallationRevocation
from ewsgate.revocations import cert_thumbprint

from .conftest import eventually, get_installation, new_installation, new_token

pytestmark = [pytest.mark.integration, pytest.mark.db]


def _options(portal, token: str) -> EnrolOptions:
    return EnrolOptions(portal=HostPort("127.0.0.1", portal.enrol_port), token=token,
                        agent_version="test", timeout=10)


async def test_enrolment_records_the_thumbprint_and_re_enrolment_revokes_the_old_one(
        portal, db, ca, tmp_path):
    installation_id = await new_installation(db)
    first = await enroll(_options(portal, await new_token(db, ca, installation_id)),
                         AgentState(tmp_path / "first"))
    old = cert_thumbprint(first.cert.public_bytes(Encoding.DER))
    row = await get_installation(db, installation_id)
    assert row is not None and row.cert_thumbprint == old
    async with db.transaction() as s:
        assert (await s.scalars(select(InstallationRevocation))).all() == []
    second = await enroll(_options(portal, await new_token(db, ca, installation_id,
                                                           purpose="replace")),
                          AgentState(tmp_path / "second"))
    new = cert_thumbprint(second.cert.public_bytes(Encoding.DER))
    row = await get_installation(db, installation_id)
    assert row is not None and row.cert_thumbprint == new != old
    async with db.transaction() as s:
        revocations = (await s.scalars(select(InstallationRevocation))).all()
    assert [(r.installation_id, r.thumbprint) for r in revocations] == [(installation_id, old)]
    assert "enrolled again" in revocations[0].reason


async def test_a_missing_thumbprint_is_recorded_when_the_certificate_opens_a_stream(
        enrol, agents, db):
    """Installations enrolled before the thumbprint existed get it from their next stream."""
    enrolled = await enrol()
    async with db.transaction() as s:
        await s.execute(update(Installation).where(Installation.id == enrolled.installation_id)
                        .values(cert_thumbprint=None))
    agents(enrolled.state)
    expected = cert_thumbprint(enrolled.identity.cert.public_bytes(Encoding.DER))

    async def recorded() -> bool:
        row = await get_installation(db, enrolled.installation_id)
        return row is not None and row.cert_thumbprint == expected

    await eventually(recorded)


async def test_a_renewed_certificate_adopted_on_first_use_becomes_the_bound_one(
        portal, enrol, agents, db):
    enrolled = await enrol()
    agent = agents(enrolled.state)
    await eventually(lambda: agent.client.connected.is_set())
    result = await portal.hub.send_command(enrolled.installation_id, "RenewCertificate", {},
                                           timeout=10)
    await eventually(lambda: agent.client.connects >= 2 and agent.client.connected.is_set())
    renewed = enrolled.state.load()
    assert renewed.serial == result["serial"]
    row = await get_installation(db, enrolled.installation_id)
    assert row is not None and row.cert_serial == renewed.serial
    assert row.cert_thumbprint == cert_thumbprint(renewed.cert.public_bytes(Encoding.DER))
    async with db.transaction() as s:  # a renewal is not a revocation
        assert (await s.scalars(select(InstallationRevocation))).all() == []
