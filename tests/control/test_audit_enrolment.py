"""An enrolment over real gRPC is audited with the installation as actor; a refused one
(the token already used) is not, because nothing changed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ewsgate.agent.enroll import EnrolError, EnrolOptions, enroll
from ewsgate.agent.state import AgentState
from ewsgate.config import HostPort
from ewsgate.portal.store.models import AuditEvent

from .conftest import new_installation, new_token

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def test_enrolment_is_audited_once_with_the_installation_as_actor(portal, db, ca,
                                                                       tmp_path):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    options = EnrolOptions(portal=HostPort("127.0.0.1", portal.enrol_port), token=token,
                           agent_version="1.2.3", timeout=10)
    identity = await enroll(options, AgentState(tmp_path / "first"))
    with pytest.raises(EnrolError):
        await enroll(options, AgentState(tmp_path / "second"))
    async with db.transaction() as s:
        entries = list((await s.scalars(select(AuditEvent).where(
            AuditEvent.action == "installation.enrol"))).all())
    assert len(entries) == 1
    (entry,) = entries
    assert (entry.actor_type, entry.actor_id) == ("installation", str(installation_id))
    assert entry.target_id == str(installation_id) and entry.dealer_id is not None
    assert entry.after_state == {"cert_serial": identity.serial,
                                 "cert_not_after": identity.not_after.isoformat(),
                                 "agent_version": "1.2.3"}
    assert "127.0.0.1" in (entry.detail or "")
    assert token not in repr(entry.after_state) + (entry.detail or "")
