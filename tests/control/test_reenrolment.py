"""Re-enrolment is explicit: a replacement an Administrator asked for, recorded; a stray older
token enrols nothing (real enrolment over gRPC, real control stream)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from ewsgate import pki
from ewsgate.agent.enroll import EnrolError, EnrolOptions, enroll
from ewsgate.agent.state import AgentState
from ewsgate.config import HostPort
from ewsgate.portal.services import installations
from ewsgate.portal.services.access import Actor, Assignment
from ewsgate.portal.services.errors import Conflict
from ewsgate.portal.store.models import Customer, Installation, User
from ewsgate.proto import control_pb2 as pb
from ewsgate.proto import control_pb2_grpc as pb_grpc

from .conftest import eventually, get_installation, new_installation, utc_now

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def administrator(db, installation_id: int, email: str = "admin@example.com") -> Actor:
    async with db.transaction() as session:
        installation = await session.get(Installation, installation_id)
        customer = await session.get(Customer, installation.customer_id)
        user = User(dealer_id=customer.dealer_id, email=email, name="Admin",
                    password_hash="unused", active=True, created_at=utc_now())
        session.add(user)
        await session.flush()
        return Actor(user_id=user.id, dealer_id=customer.dealer_id, email=user.email,
                     name=user.name, assignments=(Assignment("administrator", None),))


async def issue(db, ca, actor: Actor, installation_id: int, purpose: str | None = None) -> str:
    async with db.transaction() as session:
        issued = await installations.create_enrolment_token(session, actor, installation_id,
                                                            purpose=purpose)
    return pki.compose_enrolment_token(issued.token, ca.cert)


def options(portal, token: str) -> EnrolOptions:
    return EnrolOptions(portal=HostPort("127.0.0.1", portal.enrol_port), token=token,
                        agent_version="9.9", timeout=10)


async def test_a_newer_token_makes_an_older_unused_one_useless(portal, db, ca, tmp_path):
    installation_id = await new_installation(db)
    admin = await administrator(db, installation_id)
    stray = await issue(db, ca, admin, installation_id)
    newest = await issue(db, ca, admin, installation_id)
    with pytest.raises(EnrolError) as info:
        await enroll(options(portal, stray), AgentState(tmp_path / "stray"))
    assert info.value.code == "enrol.enrolment_token_superseded"
    assert "newest token" in str(info.value)
    assert not AgentState(tmp_path / "stray").is_enrolled()
    assert (await get_installation(db, installation_id)).cert_serial is None
    identity = await enroll(options(portal, newest), AgentState(tmp_path / "agent"))
    assert (await get_installation(db, installation_id)).cert_serial == identity.serial


async def test_an_enrolled_installation_gets_a_token_only_as_a_replacement(portal, db, ca,
                                                                          tmp_path):
    installation_id = await new_installation(db)
    admin = await administrator(db, installation_id)
    await enroll(options(portal, await issue(db, ca, admin, installation_id)),
                 AgentState(tmp_path / "agent"))
    for purpose in (None, "enrol"):
        with pytest.raises(Conflict) as info:
            await issue(db, ca, admin, installation_id, purpose)
        assert info.value.code == "installation_enrolled" and "replace" in info.value.message
    other = await new_installation(db)  # in a dealer of its own
    other_admin = await administrator(db, other, "admin@other.example")
    with pytest.raises(Conflict) as nothing:
        await issue(db, ca, other_admin, other, "replace")
    assert nothing.value.code == "installation_not_enrolled"


async def test_replacement_is_recorded_and_the_old_certificate_loses_its_stream(
        portal, db, ca, tmp_path, agents):
    installation_id = await new_installation(db)
    admin = await administrator(db, installation_id)
    old_state = AgentState(tmp_path / "old")
    old = await enroll(options(portal, await issue(db, ca, admin, installation_id)), old_state)
    agent = agents(old_state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    assert portal.hub.is_online(installation_id)

    stray = await issue(db, ca, admin, installation_id, "replace")
    replacement = await issue(db, ca, admin, installation_id, "replace")
    with pytest.raises(EnrolError) as info:  # the older replacement token
        await enroll(options(portal, stray), AgentState(tmp_path / "stray"))
    assert info.value.code == "enrol.enrolment_token_superseded"
    assert (await get_installation(db, installation_id)).cert_serial == old.serial

    new = await enroll(options(portal, replacement), AgentState(tmp_path / "new"))
    assert new.serial != old.serial
    assert (await get_installation(db, installation_id)).cert_serial == new.serial

    async with db.transaction() as session:
        history = await installations.enrolment_history(session, admin, installation_id)
    used = [r for r in history if r.used_at is not None]
    assert [(r.purpose, r.issued_cert_serial, r.replaced_cert_serial) for r in used] == [
        ("replace", new.serial, old.serial), ("enrol", old.serial, None)]
    assert all(r.created_by_email == "admin@example.com" for r in history)
    assert all(r.created_by_user_id == admin.user_id for r in history)
    assert [r.purpose for r in history if r.revoked_at is not None] == ["replace"]

    # the old agent's live stream is cut by the sweep and its certificate refused afterwards
    await eventually(lambda: not agent.client.connected.is_set(), timeout=5)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem, private_key=old.key_pem,
        certificate_chain=pki.cert_to_pem(old.cert))
    async with grpc.aio.secure_channel(
            f"127.0.0.1:{portal.port}", credentials,
            options=[("grpc.ssl_target_name_override", pki.PORTAL_SERVER_NAME)]) as channel:
        call = pb_grpc.ControlStub(channel).Connect()
        await call.write(pb.AgentMessage(hello=pb.Hello(installation_id=str(installation_id))))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), 10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "certificate_superseded" in refused.value.details()


async def test_an_enrol_token_is_stale_once_the_installation_is_enrolled(portal, db, ca,
                                                                         tmp_path):
    """Belt and braces: a token written straight into the table (not through the service,
    so it was not revoked) cannot re-enrol an enrolled installation."""
    from .conftest import new_token

    installation_id = await new_installation(db)
    first = await new_token(db, ca, installation_id)
    second = await new_token(db, ca, installation_id)
    await enroll(options(portal, first), AgentState(tmp_path / "a"))
    with pytest.raises(EnrolError) as info:
        await enroll(options(portal, second), AgentState(tmp_path / "b"))
    assert info.value.code == "enrol.enrolment_token_stale"
    assert "replacement token from an administrator" in str(info.value)
