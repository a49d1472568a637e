"""Tickets bound to the installation certificate, and revocations at admission: real TLS on
127.0.0.1, a real agent tunnel client presenting the certificate (the attacker holds a
superseded certificate with its key, or a deleted installation's certificate and a ticket)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ewsgate import pki
from ewsgate.aio.errors import TunnelError
from ewsgate.relay.revocation import Revocations
from ewsgate.revocations import InstallationRevoked, SessionRevoked, Snapshot, cert_thumbprint

from .conftest import INSTALLATION, World

pytestmark = pytest.mark.integration


def _second_certificate(world: World, name: str) -> tuple[dict[str, object], str]:
    """Another certificate of the same installation (what a re-enrolment issues)."""
    issued = world.ca.issue_installation_cert(INSTALLATION, now=dt.datetime.now(dt.UTC))
    cert, key = world.tmp / f"{name}.crt", world.tmp / f"{name}.key"
    cert.write_bytes(pki.cert_to_pem(issued.cert))
    key.write_bytes(pki.key_to_pem(issued.key))
    return {"cert": cert, "key": key}, cert_thumbprint(issued.cert.public_bytes(Encoding.DER))


async def _refused(world: World, spec_kwargs: dict[str, object],
                   **client_kwargs: object) -> TunnelError:
    client = world.client(**client_kwargs)  # type: ignore[arg-type]
    spec = world.spec(**spec_kwargs)  # type: ignore[arg-type]
    with pytest.raises(TunnelError) as info:
        await client.open_session(spec)
    assert world.registry.lookup(spec.session_id) is None
    return info.value


def _feed(world: World, *events: object) -> Revocations:
    """Give the tunnel server a revocation state that has had its snapshot."""
    revocations = Revocations()
    revocations.apply(Snapshot(server_time=time.time(), live_sessions=(), revoked_sessions=(),
                               installations=()), now=world.registry.clock.now())
    for event in events:
        revocations.apply(event, now=world.registry.clock.now())  # type: ignore[arg-type]
    world.server.revocations = revocations
    return revocations


async def test_a_superseded_certificate_with_a_current_ticket_is_refused(world: World) -> None:
    """Re-enrolment made a new certificate current; the portal binds new tickets to it. The
    old certificate (and its key, still on a stolen or replaced machine) gets nothing."""
    _, current = _second_certificate(world, "current")
    ticket = world.ticket("s-new", thumbprint=current)
    err = await _refused(world, {"session_id": "s-new", "ticket": ticket})
    assert "wrong_certificate" in err.message and "superseded" in err.message


async def test_the_certificate_a_ticket_is_bound_to_is_admitted(world: World) -> None:
    files, current = _second_certificate(world, "current")
    ticket = world.ticket("s-ok", thumbprint=current)
    session = await world.client(**files).open_session(  # type: ignore[arg-type]
        world.spec("s-ok", ticket=ticket))
    assert session.generation == 1
    live = world.registry.tunnel("s-ok")
    assert live is not None and live.ticket.certificate_thumbprint == current


async def test_a_ticket_without_a_certificate_binding_is_refused(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    dev = world.device()
    unbound = world.issuer.tunnel_ticket(
        relay_id="relay-1", installation_id=INSTALLATION, session_id="s-unbound",
        expires_at=now + dt.timedelta(minutes=5),
        device={"ip": dev.ip, "hostname": None,
                "endpoints": [{"scheme": e.scheme, "port": e.port} for e in dev.endpoints]},
    ).token
    err = await _refused(world, {"session_id": "s-unbound", "ticket": unbound})
    assert "unbound" in err.message


async def test_a_deleted_installations_new_tunnel_is_refused(world: World) -> None:
    """The installation was deleted after the ticket was issued: its certificate still chains
    to the CA and its ticket still verifies, but the relay has the portal's revocation."""
    spec = world.spec("s-deleted")
    _feed(world, InstallationRevoked(installation_id=INSTALLATION,
                                     revoked_at=time.time() + 1,
                                     reason="installation inst-1 was deleted"))
    with pytest.raises(TunnelError) as info:
        await world.client().open_session(spec)
    assert "installation_revoked" in info.value.message and "deleted" in info.value.message
    assert world.registry.lookup("s-deleted") is None


async def test_a_ticket_issued_after_the_revocation_is_admitted(world: World) -> None:
    """Disable then enable again: tickets issued afterwards work."""
    _feed(world, InstallationRevoked(installation_id=INSTALLATION,
                                     revoked_at=time.time() - 5, reason="disabled"))
    session = await world.client().open_session(world.spec("s-after"))
    assert session.generation == 1


async def test_a_revoked_sessions_ticket_is_refused(world: World) -> None:
    spec = world.spec("s-gone")
    _feed(world, SessionRevoked(session_id="s-gone", reason="ended by its owner",
                                expires_at=time.time() + 600))
    with pytest.raises(TunnelError) as info:
        await world.client().open_session(spec)
    assert "session_revoked" in info.value.message and "ended by its owner" in info.value.message
    assert world.registry.lookup("s-gone") is None


async def test_no_tunnel_before_the_portal_was_heard(world: World) -> None:
    """A relay that has no snapshot yet knows none of the revocations: it refuses."""
    world.server.revocations = Revocations()
    err = await _refused(world, {"session_id": "s-early"})
    assert "portal_unreachable" in err.message


async def test_no_new_tunnel_once_the_portal_is_silent_past_the_bound(world: World) -> None:
    revocations = _feed(world)
    revocations.unreachable_after = 30.0
    assert revocations.last_heard is not None
    revocations.last_heard -= 31.0
    err = await _refused(world, {"session_id": "s-silent"})
    assert "portal_unreachable" in err.message and "30 s" in err.message
    revocations.heard(world.registry.clock.now())
    session = await world.client().open_session(world.spec("s-heard"))
    assert session.generation == 1
