"""Enrolment: one-time tokens, the CA pin, and what lands in the agent's data directory."""

from __future__ import annotations

import datetime as dt
import stat

import grpc
import pytest
from sqlalchemy import select

from ewsgate import pki
from ewsgate.agent.enroll import EnrolError, EnrolOptions, enroll
from ewsgate.agent.state import AgentState
from ewsgate.config import HostPort
from ewsgate.portal.store.models import EnrolmentToken
from ewsgate.proto import control_pb2 as pb
from ewsgate.proto import control_pb2_grpc as pb_grpc

from .conftest import get_installation, new_installation, new_token, utc_now

pytestmark = [pytest.mark.integration, pytest.mark.db]


def options(portal, token: str) -> EnrolOptions:
    return EnrolOptions(portal=HostPort("127.0.0.1", portal.enrol_port), token=token,
                        agent_version="1.2.3", timeout=10)


async def test_enrolment_saves_key_0600_and_records_the_certificate(portal, db, ca, tmp_path):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    state = AgentState(tmp_path / "agent")
    identity = await enroll(options(portal, token), state)
    assert identity.installation_id == str(installation_id)
    assert identity.control_address == HostPort("127.0.0.1", portal.port)
    assert stat.S_IMODE(state.key_path.stat().st_mode) == 0o600
    assert state.load() == identity
    assert pki.installation_id_from_cert(identity.cert) == str(installation_id)
    assert identity.not_after - identity.not_before == pki.CLIENT_CERT_LIFETIME \
        + dt.timedelta(minutes=5)
    row = await get_installation(db, installation_id)
    assert row.cert_serial == identity.serial and row.agent_version == "1.2.3"
    assert row.cert_not_after == identity.not_after


async def test_token_cannot_be_used_twice(portal, db, ca, tmp_path):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    await enroll(options(portal, token), AgentState(tmp_path / "first"))
    with pytest.raises(EnrolError) as info:
        await enroll(options(portal, token), AgentState(tmp_path / "second"))
    assert info.value.code == "enrol.enrolment_token_used"
    assert not AgentState(tmp_path / "second").is_enrolled()


async def test_expired_token_is_refused(portal, db, ca, tmp_path):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id, lifetime=dt.timedelta(seconds=-1))
    with pytest.raises(EnrolError) as info:
        await enroll(options(portal, token), AgentState(tmp_path / "agent"))
    assert info.value.code == "enrol.enrolment_token_expired"
    assert (await get_installation(db, installation_id)).cert_serial is None


async def test_unknown_token_is_refused(portal, ca, tmp_path):
    token = pki.compose_enrolment_token("ewse_not-a-real-token", ca.cert)
    with pytest.raises(EnrolError) as info:
        await enroll(options(portal, token), AgentState(tmp_path / "agent"))
    assert info.value.code == "enrol.enrolment_token_invalid"


async def test_wrong_ca_pin_stops_before_the_secret_is_sent(portal, db, ca, tmp_path):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    secret, _ = pki.split_enrolment_token(token)
    other = pki.create_ca(now=utc_now())
    with pytest.raises(EnrolError) as info:
        await enroll(options(portal, pki.compose_enrolment_token(secret, other.cert)),
                     AgentState(tmp_path / "agent"))
    assert info.value.code == "enrol.ca_pin_mismatch"
    async with db.transaction() as session:
        record = await session.scalar(select(EnrolmentToken))
    assert record.used_at is None
    await enroll(options(portal, token), AgentState(tmp_path / "agent"))


async def test_token_without_pin_is_refused_locally(portal, tmp_path):
    with pytest.raises(EnrolError) as info:
        await enroll(options(portal, "ewse_abc"), AgentState(tmp_path / "agent"))
    assert info.value.code == "enrol.bad_token"


async def test_bad_csr_is_refused_and_leaves_the_token_unused(portal, db, ca):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    secret, _ = pki.split_enrolment_token(token)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem)
    async with grpc.aio.secure_channel(
            f"127.0.0.1:{portal.enrol_port}", credentials,
            options=[("grpc.ssl_target_name_override", pki.PORTAL_SERVER_NAME)]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.EnrolmentStub(channel).Enroll(
                pb.EnrollRequest(token=secret, csr_pem=b"garbage"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pki.bad_csr" in info.value.details()
    async with db.transaction() as session:
        assert (await session.scalar(select(EnrolmentToken))).used_at is None


async def test_disabled_installation_cannot_enrol(portal, db, ca, tmp_path):
    installation_id = await new_installation(db, enabled=False)
    token = await new_token(db, ca, installation_id)
    with pytest.raises(EnrolError) as info:
        await enroll(options(portal, token), AgentState(tmp_path / "agent"))
    assert info.value.code == "enrol.installation_disabled"


async def test_enrolling_at_the_control_port_says_to_use_the_enrolment_port(portal, db, ca,
                                                                            tmp_path):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    with pytest.raises(EnrolError) as info:
        await enroll(EnrolOptions(portal=HostPort("127.0.0.1", portal.port), token=token,
                                  agent_version="t", timeout=10), AgentState(tmp_path / "a"))
    assert "enrolment port" in str(info.value)
    async with db.transaction() as session:
        assert (await session.scalar(select(EnrolmentToken))).used_at is None
