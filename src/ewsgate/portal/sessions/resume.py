"""Restarts resume, or end honestly: live sessions of an installation whose stream came back.

An agent that restarts loses its tunnels; the portal's rows still say ``ready`` and the relay
answers every request with "device unreachable" until the 30-minute cap. So when an
installation's control stream is (re)attached, the portal re-sends ``OpenSession`` for each of
its live sessions that has no ``OpenSession`` running in this process, with a **fresh tunnel
ticket** (same session, same expiry, a new ``jti``) and the identity check again::

    stream attached ──▶ live sessions of the installation (not expired, no open task here)
                          │ OpenSession {same session, fresh ticket}
                          ├─ ok      → ready (an agent that only reconnected still has the
                          │            tunnel and answers at once)
                          └─ failure → failed, "installation_restarted: …" on the job

The same path recovers sessions whose opening replica crashed mid-``OpenSession`` (they would
otherwise wait for the stuck-open sweep).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ewsgate.portal.services.device_identity import verify_payload
from ewsgate.portal.services.errors import ServiceError
from ewsgate.portal.sessions.status import LIVE, SessionStatus
from ewsgate.portal.store.models import Device, Installation, Relay, RemoteSession

if TYPE_CHECKING:
    from ewsgate.portal.sessions.service import RemoteSessions

__all__ = ["RESTARTED", "open_session_payload", "resume_installation"]

log = logging.getLogger(__name__)

#: the reason a session that could not be resumed ends with
RESTARTED = "installation_restarted: the installation restarted and the session could not be " \
            "resumed"
_LIVE = tuple(s.value for s in LIVE)


def ticket_policy(row: RemoteSession) -> dict[str, Any]:
    """The ticket's ``pol`` claim: what the relay enforces (:mod:`ewsgate.relay.session_policy`)."""
    return {"mode": row.mode or "full", "idle": row.idle_timeout_seconds,
            "panel": bool(row.allow_panel)}


def open_session_payload(service: RemoteSessions, *, session_id: str, installation_id: int,
                         device: Device, relay: Relay, expires_at: datetime,
                         device_view: dict[str, Any],
                         certificate_thumbprint: str | None,
                         site_subnets: list[str] | None = None,
                         row: RemoteSession | None = None) -> dict[str, Any]:
    """The ``OpenSession`` payload (docs/sessions.md) with a freshly issued tunnel ticket,
    bound to the installation certificate ``certificate_thumbprint`` (``cnf``) and carrying
    the session's policy (``row``: mode, idle timeout) for the relay; the identity part carries
    the installation's ``site_subnets``."""
    ticket = service.tickets.tunnel_ticket(
        relay_id=str(relay.id), installation_id=str(installation_id), session_id=session_id,
        expires_at=expires_at, device=device_view,
        certificate_thumbprint=certificate_thumbprint,
        policy=ticket_policy(row) if row is not None else None)
    return {
        "session_id": session_id,
        "expires_at": expires_at.isoformat(),
        "expires_at_unix_ms": int(expires_at.timestamp() * 1000),
        "device": device_view,
        "identity": verify_payload(device, site_subnets=site_subnets),
        "relay": {"id": str(relay.id), "name": relay.name,
                  "tunnel_address": relay.tunnel_address},
        "ticket": ticket.token,
    }


async def resume_installation(service: RemoteSessions, installation_id: int) -> int:
    """Re-send ``OpenSession`` for the installation's live sessions (see the module
    docstring); returns how many were re-sent. Runs in the background of an attach."""
    from ewsgate.portal.sessions.service import device_payload

    now = service.now()
    async with service.db.transaction() as session:
        rows = (await session.execute(
            select(RemoteSession, Device, Relay)
            .join(Device, Device.id == RemoteSession.device_id)
            .join(Relay, Relay.id == RemoteSession.relay_id)
            .where(Device.installation_id == installation_id,
                   RemoteSession.status.in_(_LIVE), RemoteSession.expires_at > now))).all()
        installation = await session.get(Installation, installation_id)
        thumbprint = installation.cert_thumbprint if installation is not None else None
        subnets = installation.site_subnets if installation is not None else None
        payloads = []
        for row, device, relay in rows:
            if row.id in service._tasks:
                continue  # its OpenSession is still running in this process
            expires_at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(
                tzinfo=now.tzinfo)
            payloads.append((row.id, open_session_payload(
                service, session_id=row.id, installation_id=installation_id, device=device,
                relay=relay, expires_at=expires_at, device_view=device_payload(device),
                certificate_thumbprint=thumbprint, site_subnets=subnets, row=row)))
    for session_id, payload in payloads:
        task = asyncio.ensure_future(_resume(service, session_id, installation_id, payload))
        service._tasks[session_id] = task
        task.add_done_callback(functools.partial(_forget, service, session_id))
    if payloads:
        log.info("installation %s is back: re-sending OpenSession for %d live session(s)",
                 installation_id, len(payloads))
    return len(payloads)


def _forget(service: RemoteSessions, session_id: str, _task: object) -> None:
    service._tasks.pop(session_id, None)


async def _resume(service: RemoteSessions, session_id: str, installation_id: int,
                  payload: dict[str, Any]) -> None:
    try:
        await service.hub.send_command(installation_id, "OpenSession", payload,
                                       timeout=service.config.open_timeout_seconds)
    except ServiceError as exc:
        await service.move(session_id, SessionStatus.FAILED,
                           f"{RESTARTED} ({exc.code}: {exc.message})")
        await service.teardown()
        return
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug: fail closed, like a first open
        log.exception("re-sending OpenSession for session %s failed", session_id)
        await service.move(session_id, SessionStatus.FAILED, f"{RESTARTED} (internal: {exc})")
        await service.teardown()
        return
    await service.move(session_id, SessionStatus.READY)
