"""Who may open a control stream: only the current certificate of an existing, enabled
installation, and only as the installation its certificate names (real TLS, real grpcio)."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest

from ewsgate import pki
from ewsgate.portal.store.models import Installation
from ewsgate.proto import control_pb2 as pb
from ewsgate.proto import control_pb2_grpc as pb_grpc

from .conftest import eventually, get_installation, new_installation, utc_now

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def open_stream(port: int, ca_pem: bytes, key_pem: bytes | None = None,
                      cert_pem: bytes | None = None, claim: str = "") -> pb.PortalMessage:
    """Connect, send Hello (claiming ``claim``) and return the first answer (or raise)."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem,
                                               certificate_chain=cert_pem)
    options = [("grpc.ssl_target_name_override", pki.PORTAL_SERVER_NAME),
               ("grpc.enable_http_proxy", 0)]
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials,
                                       options=options) as channel:
        call = pb_grpc.ControlStub(channel).Connect()
        await call.write(pb.AgentMessage(hello=pb.Hello(installation_id=claim,
                                                        agent_version="probe")))
        message = await asyncio.wait_for(call.read(), 10)
        if message is grpc.aio.EOF:
            await call
        call.cancel()
        return message


async def refused_with(port: int, ca_pem: bytes, *args: object, **kwargs: object
                       ) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await open_stream(port, ca_pem, *args, **kwargs)
    return info.value


async def test_enrolled_certificate_is_welcomed_with_its_installation_id(portal, enrol, ca):
    enrolled = await enrol()
    identity = enrolled.identity
    answer = await open_stream(portal.port, ca.cert_pem, identity.key_pem, identity.cert_pem)
    assert answer.WhichOneof("body") == "welcome"
    assert answer.welcome.installation_id == str(enrolled.installation_id)


async def test_no_client_certificate_fails_the_handshake_with_unavailable(portal, ca):
    error = await refused_with(portal.port, ca.cert_pem)
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_of_another_ca_with_the_same_subject_is_refused(portal, enrol, ca):
    enrolled = await enrol()
    impostor_ca = pki.create_ca(ca.cert.subject.get_attributes_for_oid(
        pki.NameOID.COMMON_NAME)[0].value, now=utc_now())
    assert impostor_ca.cert.subject == ca.cert.subject
    forged = impostor_ca.issue_installation_cert(enrolled.installation_id, now=utc_now())
    assert forged.cert.subject == enrolled.identity.cert.subject
    error = await refused_with(portal.port, ca.cert_pem, forged.key_pem, forged.cert_pem)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert not portal.hub.is_online(enrolled.installation_id)


async def test_expired_certificate_is_refused(portal, db, ca):
    installation_id = await new_installation(db)
    issued_at = utc_now() - dt.timedelta(days=40)
    expired = ca.issue_installation_cert(installation_id, now=issued_at)
    async with db.transaction() as session:
        row = await session.get(Installation, installation_id)
        row.cert_serial = pki.serial_hex(expired.cert)
        row.cert_not_after = expired.cert.not_valid_after_utc
    error = await refused_with(portal.port, ca.cert_pem, expired.key_pem, expired.cert_pem)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert not portal.hub.is_online(installation_id)


async def test_deleted_installation_is_refused_and_its_live_stream_is_cut(
        portal, enrol, agents, db, ca):
    enrolled = await enrol()
    agent = agents(enrolled.state)
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    async with db.transaction() as session:
        await session.delete(await session.get(Installation, enrolled.installation_id))
    await eventually(lambda: not portal.hub.is_online(enrolled.installation_id), timeout=3)
    await eventually(lambda: "installation_deleted" in (agent.client.last_error or ""),
                     timeout=5)
    identity = enrolled.identity
    error = await refused_with(portal.port, ca.cert_pem, identity.key_pem, identity.cert_pem)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "installation_deleted" in error.details()


async def test_disabled_installation_is_refused(portal, enrol, db, ca):
    enrolled = await enrol()
    async with db.transaction() as session:
        (await session.get(Installation, enrolled.installation_id)).enabled = False
    identity = enrolled.identity
    error = await refused_with(portal.port, ca.cert_pem, identity.key_pem, identity.cert_pem)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "installation_disabled" in error.details()


async def test_hello_claiming_another_installation_is_refused(portal, enrol, ca, db):
    mine, other = await enrol("mine"), await enrol("other")
    identity = mine.identity
    error = await refused_with(portal.port, ca.cert_pem, identity.key_pem, identity.cert_pem,
                               claim=str(other.installation_id))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "identity_mismatch" in error.details()
    assert not portal.hub.is_online(other.installation_id)
    assert not (await get_installation(db, other.installation_id)).online


async def test_certificate_replaced_by_a_new_enrolment_is_refused(portal, enrol, ca, db):
    enrolled = await enrol()
    replacement = ca.issue_installation_cert(enrolled.installation_id, now=utc_now(),
                                             lifetime=pki.CLIENT_CERT_LIFETIME
                                             + dt.timedelta(minutes=1))
    async with db.transaction() as session:
        row = await session.get(Installation, enrolled.installation_id)
        row.cert_serial = pki.serial_hex(replacement.cert)
        row.cert_not_after = replacement.cert.not_valid_after_utc
    identity = enrolled.identity
    error = await refused_with(portal.port, ca.cert_pem, identity.key_pem, identity.cert_pem)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "certificate_superseded" in error.details()


async def test_control_stream_on_the_enrolment_port_is_refused(portal, ca):
    error = await refused_with(portal.enrol_port, ca.cert_pem)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_first_message_must_be_hello(portal, enrol, ca):
    enrolled = await enrol()
    identity = enrolled.identity
    credentials = grpc.ssl_channel_credentials(ca.cert_pem, identity.key_pem, identity.cert_pem)
    options = [("grpc.ssl_target_name_override", pki.PORTAL_SERVER_NAME)]
    async with grpc.aio.secure_channel(f"127.0.0.1:{portal.port}", credentials,
                                       options=options) as channel:
        call = pb_grpc.ControlStub(channel).Connect()
        await call.write(pb.AgentMessage(heartbeat=pb.Heartbeat(seq=1)))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            message = await call.read()
            if message is grpc.aio.EOF:
                await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
