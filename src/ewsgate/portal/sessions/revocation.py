"""Revocations the relays must obey: what ends sessions, and what the relays are told.

Every way a session ends writes the same thing, ``remote_sessions.status`` = ``ended`` (or
``failed``) with ``ended_at``, in one conditional ``UPDATE``; and every way an installation stops
being trusted writes one ``installation_revocations`` row. The relay's event stream is derived
from those two facts alone (:func:`relay_snapshot`, :func:`relay_changes`), so a trigger added
later needs no event code, another portal replica's change reaches every relay, and a portal
restart loses nothing::

    End / Terminate (service.move)        ─┐
    Remote Technician switched off          │
    OAuth code reuse                        ├─► remote_sessions.status = ended, ended_at
    user signed out / deactivated /         │       │
      deleted / lost a role                 │       │   GET /api/v1/relay/events (SSE)
    installation disabled / deleted /      ─┤       ├─► snapshot, session_revoked,
      re-enrolled ─► installation_revocations ──────┘   installation_revoked, heartbeat
                                                       ─► relay ends the session itself

The sweeper then finishes each job and sends ``CloseSession`` to the agent, as for any ended
session; the relay does not wait for that.

Polling. One poller per replica (:mod:`.revocation_stream`) re-reads the rows changed since its
previous read minus :data:`OVERLAP` seconds, so a transaction that committed late (its
``ended_at`` is older than its commit) is not missed; the overlap means an event can be sent
twice, which is harmless (each stream drops what it already sent).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import audit
from ewsgate.portal.store.models import Device, InstallationRevocation, RemoteSession
from ewsgate.revocations import InstallationRevoked, SessionRevoked, Snapshot

__all__ = [
    "OVERLAP",
    "REVOCATION_KEEP",
    "all_changes",
    "certificate_replaced",
    "end_installation_sessions",
    "end_user_sessions",
    "event_key",
    "fresh",
    "prune_revocations",
    "relay_changes",
    "relay_snapshot",
    "revoke_installation",
]

_LIVE = ("verifying", "connecting", "ready")
_TERMINAL = ("ended", "failed")
#: seconds each poll looks back past the previous one (late commits)
OVERLAP = 5.0
#: how long an installation revocation is kept and sent: the longest session, with a margin
REVOCATION_KEEP = timedelta(minutes=35)


async def end_user_sessions(session: AsyncSession, user_id: int, reason: str,
                            now: datetime) -> int:
    """End every live session of ``user_id``; returns how many (signed out, deactivated,
    deleted or a role taken away: the relays end them within seconds)."""
    await audit.record_sessions_ended(session, RemoteSession.user_id == user_id, reason,
                                      clock=lambda: now)
    result = await session.execute(
        update(RemoteSession)
        .where(RemoteSession.user_id == user_id, RemoteSession.status.in_(_LIVE))
        .values(status="ended", reason=reason, ended_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


async def end_installation_sessions(session: AsyncSession, installation_id: int, reason: str,
                                    now: datetime) -> int:
    """End every live session on a device of ``installation_id``; returns how many."""
    devices = select(Device.id).where(Device.installation_id == installation_id)
    await audit.record_sessions_ended(session, RemoteSession.device_id.in_(devices), reason,
                                      clock=lambda: now)
    result = await session.execute(
        update(RemoteSession)
        .where(RemoteSession.device_id.in_(devices), RemoteSession.status.in_(_LIVE))
        .values(status="ended", reason=reason, ended_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


async def revoke_installation(session: AsyncSession, installation_id: int, reason: str,
                              now: datetime, *, thumbprint: str | None = None) -> None:
    """Stop trusting the installation's earlier tickets: end its live sessions and record a
    revocation every relay refuses tickets issued until ``now`` by (disable, delete,
    re-enrolment). Call it before deleting the installation: the sessions lose their device."""
    await end_installation_sessions(session, installation_id, reason, now)
    session.add(InstallationRevocation(installation_id=installation_id, revoked_at=now,
                                       reason=reason, thumbprint=thumbprint))
    await session.flush()


async def certificate_replaced(session: AsyncSession, installation_id: int,
                               old_thumbprint: str | None, now: datetime,
                               reason: str = "the installation was enrolled again: its earlier "
                                             "certificate is revoked") -> None:
    """The one hook for a new certificate superseding the installation's old one (a
    re-enrolment): the old certificate and every ticket issued before now are refused."""
    await revoke_installation(session, installation_id, reason, now, thumbprint=old_thumbprint)


def _revocation(row: InstallationRevocation) -> InstallationRevoked:
    return InstallationRevoked(installation_id=str(row.installation_id),
                               revoked_at=row.revoked_at.timestamp(), reason=row.reason,
                               thumbprint=row.thumbprint)


def _session_revoked(row: RemoteSession) -> SessionRevoked:
    return SessionRevoked(session_id=row.id, reason=row.reason or f"the session {row.status}",
                          expires_at=row.expires_at.timestamp())


async def relay_snapshot(session: AsyncSession, relay_id: int, now: datetime) -> Snapshot:
    """Reconciliation data for ``relay_id``: its live sessions, its ended sessions whose tickets
    have not expired, and recent installation revocations."""
    rows = (await session.scalars(select(RemoteSession).where(
        RemoteSession.relay_id == relay_id, RemoteSession.expires_at > now))).all()
    revocations = (await session.scalars(select(InstallationRevocation).where(
        InstallationRevocation.revoked_at > now - REVOCATION_KEEP)
        .order_by(InstallationRevocation.id))).all()
    return Snapshot(
        server_time=now.timestamp(),
        live_sessions=tuple(r.id for r in rows if r.status in _LIVE),
        revoked_sessions=tuple(_session_revoked(r) for r in rows if r.status in _TERMINAL),
        installations=tuple(_revocation(r) for r in revocations))


async def relay_changes(session: AsyncSession, relay_id: int, since: datetime,
                        now: datetime) -> list[SessionRevoked | InstallationRevoked]:
    """What changed for ``relay_id`` from ``since`` (minus :data:`OVERLAP`) to ``now``."""
    start = since - timedelta(seconds=OVERLAP)
    # ended_at is set exactly when a session becomes terminal: its index finds the few rows
    # of the last seconds (the status index would walk the whole history)
    rows = (await session.scalars(select(RemoteSession).where(
        RemoteSession.ended_at >= start, RemoteSession.relay_id == relay_id,
        RemoteSession.expires_at > now))).all()
    revocations = (await session.scalars(select(InstallationRevocation).where(
        InstallationRevocation.revoked_at >= start).order_by(InstallationRevocation.id))).all()
    events: list[SessionRevoked | InstallationRevoked] = [_session_revoked(r) for r in rows
                                                          if r.status in _TERMINAL]
    events.extend(_revocation(r) for r in revocations)
    return events


async def all_changes(session: AsyncSession, since: datetime, now: datetime
                      ) -> tuple[dict[int, list[SessionRevoked]], list[InstallationRevoked]]:
    """What changed for every relay from ``since`` (minus :data:`OVERLAP`) to ``now``: the
    ended sessions by relay id, and the installation revocations (for all relays)."""
    start = since - timedelta(seconds=OVERLAP)
    rows = (await session.scalars(select(RemoteSession).where(
        RemoteSession.ended_at >= start, RemoteSession.expires_at > now))).all()
    by_relay: dict[int, list[SessionRevoked]] = {}
    for row in rows:
        if row.relay_id is not None and row.status in _TERMINAL:
            by_relay.setdefault(row.relay_id, []).append(_session_revoked(row))
    revocations = (await session.scalars(select(InstallationRevocation).where(
        InstallationRevocation.revoked_at >= start).order_by(InstallationRevocation.id))).all()
    return by_relay, [_revocation(r) for r in revocations]


async def prune_revocations(session: AsyncSession, now: datetime) -> int:
    """Delete installation revocations no relay needs any more; returns how many."""
    result = await session.execute(delete(InstallationRevocation).where(
        InstallationRevocation.revoked_at <= now - REVOCATION_KEEP))
    return int(getattr(result, "rowcount", 0) or 0)


def event_key(event: SessionRevoked | InstallationRevoked) -> str:
    """A stable identity for de-duplicating events within one stream."""
    if isinstance(event, SessionRevoked):
        return f"s:{event.session_id}"
    return f"i:{event.installation_id}:{event.revoked_at}:{event.thumbprint}"


def fresh(events: Iterable[SessionRevoked | InstallationRevoked],
          sent: set[str]) -> list[SessionRevoked | InstallationRevoked]:
    """The events not sent yet on this stream (and remember them)."""
    out = []
    for event in events:
        key = event_key(event)
        if key not in sent:
            sent.add(key)
            out.append(event)
    return out
