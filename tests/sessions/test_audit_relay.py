"""Audit entries of Remote Technician: the relay-facing certificate call (the relay is the
actor), and a session's start and its end by the owner, with the time limit's end by the
portal itself."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from ewsgate.portal.oauth.client_auth import basic_auth_header
from ewsgate.portal.store.models import AuditEvent
from sessions.rt_http import BASE, Portal
from sessions.rt_world import settle

pytestmark = pytest.mark.db


async def _entries(portal: Portal, action: str) -> list[AuditEvent]:
    async with portal.world.db.transaction() as s:
        return list((await s.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                     .order_by(AuditEvent.id))).all())


async def test_relay_certificate_is_audited_with_the_relay_as_actor(portal: Portal) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rt.localhost")]))
           .sign(key, hashes.SHA256()))
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    w = portal.world
    auth = {"Authorization": basic_auth_header(str(w.relays["relay-x"]),
                                               w.relay_secrets["relay-x"])}
    async with portal.client() as client:
        refused = await client.post("/api/v1/relay/certificate", json={"csr_pem": "nope"},
                                    headers=auth)
        assert refused.status_code == 422
        assert await _entries(portal, "relay.certificate") == []  # nothing issued, no entry
        reply = await client.post("/api/v1/relay/certificate", json={"csr_pem": pem},
                                  headers=auth)
        assert reply.status_code == 200, reply.text
    (entry,) = await _entries(portal, "relay.certificate")
    assert (entry.actor_type, entry.actor_id, entry.actor_label) == (
        "relay", str(w.relays["relay-x"]), "relay-x")
    assert entry.after_state is not None
    assert entry.after_state["dns_names"] == reply.json()["dns_names"]
    assert "PRIVATE" not in repr(entry.after_state) and "CERTIFICATE" not in repr(
        entry.after_state)


async def test_session_start_and_end_are_audited(portal: Portal) -> None:
    w = portal.world
    async with portal.client() as client:
        csrf = await portal.sign_in(client, "tech")
        started = await client.post(f"/api/v1/devices/{w.device['on']}/remote-sessions",
                                    headers={"X-CSRF-Token": csrf, "Origin": BASE})
        assert started.status_code == 201, started.text
        session_id = started.json()["session_id"]
        await settle(w)
        ended = await client.delete(f"/api/v1/remote-sessions/{session_id}",
                                    headers={"X-CSRF-Token": csrf, "Origin": BASE})
        assert ended.status_code == 200, ended.text
    (start,) = await _entries(portal, "remote_session.start")
    assert (start.target_id, start.actor_label) == (session_id, w.emails["tech"])
    assert start.after_state is not None and start.after_state["device_id"] == w.device["on"]
    ends = [e for e in await _entries(portal, "remote_session.end")
            if e.target_id == session_id]
    assert len(ends) == 1 and ends[0].actor_label == w.emails["tech"]
    assert ends[0].detail == "ended by its owner"
    assert await _entries(portal, "remote_session.terminate") == []


async def test_the_time_limit_end_is_audited_as_the_portal(portal: Portal) -> None:
    w = portal.world
    async with portal.client() as client:
        csrf = await portal.sign_in(client, "tech")
        started = await client.post(f"/api/v1/devices/{w.device['on']}/remote-sessions",
                                    headers={"X-CSRF-Token": csrf, "Origin": BASE})
        assert started.status_code == 201, started.text
    await settle(w)
    w.clock.advance(31 * 60)
    await portal.rt.sessions.sweep()
    (end,) = [e for e in await _entries(portal, "remote_session.end")
              if e.target_id == started.json()["session_id"]]
    assert (end.actor_type, end.actor_id) == ("system", None)
    assert end.detail == "the session reached its time limit"


async def test_sessions_ended_by_signing_out_get_an_entry_each(portal: Portal) -> None:
    """A bulk end (sign-out here; also a device switched off or removed, a user or role
    removed, an installation revoked) records every session it ends, not only its cause."""
    w = portal.world
    async with portal.client() as client:
        csrf = await portal.sign_in(client, "tech")
        started = await client.post(f"/api/v1/devices/{w.device['on']}/remote-sessions",
                                    headers={"X-CSRF-Token": csrf, "Origin": BASE})
        assert started.status_code == 201, started.text
        await settle(w)
        out = await client.post("/api/v1/auth/logout",
                                headers={"X-CSRF-Token": csrf, "Origin": BASE})
        assert out.status_code == 204
    session_id = started.json()["session_id"]
    (sign_out,) = await _entries(portal, "auth.sign_out")
    assert sign_out.actor_label == w.emails["tech"]
    (end,) = [e for e in await _entries(portal, "remote_session.end")
              if e.target_id == session_id]
    assert (end.actor_type, end.detail) == ("system", "the user signed out of the portal")
