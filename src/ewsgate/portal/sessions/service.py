"""The remote session lifecycle over the database and the control hub.

::

    create ─► rows: Job(open_device_web_page, running) + RemoteSession(verifying)   [commit]
        └──► background: OpenSession ──progress "connecting"──► connecting
                                     ──progress "ready" / result OK──► ready
                                     ──CommandError (mismatch, offline, timeout)──► failed
    end (owner / administrator), device switch off, expiry (sweeper) ─► ended
    teardown (for every ended/failed session whose job is still running):
        finish the job (completed / failed, with the reason), then CloseSession to the agent

Every status write is a conditional ``UPDATE … WHERE status IN (<allowed predecessors>)`` built
from :mod:`.status`, so concurrent writers (a late progress report, the sweeper, a user's *End*,
another portal replica, the device service ending sessions when Remote Technician is switched
off) cannot move a session backwards or revive it. *Teardown* is keyed on the database alone
(a terminal session whose job is still ``running``), so it also happens for sessions ended by
someone else — :func:`ewsgate.portal.services.devices.set_remote_technician` marks them ended
and the sweeper finishes the work — and after a portal restart.

Access: creating needs the Remote Technician User role on an enabled device in scope
(:func:`~ewsgate.portal.services.devices.authorize_open_session`); reading needs the job to be
visible; ending needs to be the session's owner or an Administrator over the device's customer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.notifications.session_events import session_ended, session_started
from ewsgate.portal.oauth.tokens import TokenIssuer
from ewsgate.portal.services import audit, device_pins
from ewsgate.portal.services import devices as device_service
from ewsgate.portal.services import jobs as job_service
from ewsgate.portal.services.access import Action, Actor, load_tree, scope_for
from ewsgate.portal.services.errors import Conflict, NotFound, PermissionDenied, ServiceError
from ewsgate.portal.services.policies import effective_for_customer
from ewsgate.portal.sessions.events import SessionEnded, SessionEvents, SessionStarted
from ewsgate.portal.sessions.gate import Purpose, admit
from ewsgate.portal.sessions.naming import (
    SessionConfig,
    expiry_for,
    new_session_id,
    pick_relay,
    session_address,
)
from ewsgate.portal.sessions.relay_health import (
    RelayHealthConfig,
    describe_unplaceable,
    placeable,
    sweep_lost_relays,
)
from ewsgate.portal.sessions.resume import open_session_payload, resume_installation
from ewsgate.portal.sessions.revocation import prune_revocations
from ewsgate.portal.sessions.status import LIVE, SessionStatus, can_move
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Device, Installation, Job, Relay, RemoteSession, User

__all__ = [
    "JOB_TYPE",
    "CommandSender",
    "RemoteSessions",
    "SessionView",
    "device_payload",
]

log = logging.getLogger(__name__)

JOB_TYPE = "open_device_web_page"
_LIVE = tuple(s.value for s in LIVE)
#: progress stages the agent reports → the session status they mean
_STAGES = {
    "verifying": SessionStatus.VERIFYING,
    "identity": SessionStatus.VERIFYING,
    "checking": SessionStatus.VERIFYING,
    "snmp": SessionStatus.VERIFYING,
    "arp": SessionStatus.VERIFYING,
    "verified": SessionStatus.CONNECTING,
    "connecting": SessionStatus.CONNECTING,
    "tunnel": SessionStatus.CONNECTING,
    "ready": SessionStatus.READY,
    "connected": SessionStatus.READY,
}


class CommandSender(Protocol):
    """What the service needs of :class:`ewsgate.portal.control.hub.ControlHub`."""

    async def send_command(self, installation_id: int, kind: str,
                           payload: Mapping[str, Any] | None = None, *, timeout: float = 30.0,  # noqa: ASYNC109
                           on_progress: Callable[[Any], Awaitable[None] | None] | None = None,
                           ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SessionView:
    """A session as the API and the UI show it."""

    session_id: str
    job_id: int
    device_id: int | None
    device_name: str | None
    user_id: int | None
    user_email: str | None
    relay_id: int | None
    host: str
    url: str
    status: str
    reason: str | None
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None

    def as_json(self, now: datetime) -> dict[str, Any]:
        """The REST representation (``expires_in`` counts down from ``now``)."""
        return {
            "session_id": self.session_id,
            "job_id": self.job_id,
            "device_id": self.device_id,
            "device_name": self.device_name,
            "user_id": self.user_id,
            "user_email": self.user_email,
            "url": self.url,
            "status": self.status,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "expires_in": max(0, int((self.expires_at - now).total_seconds()))
            if self.status in _LIVE else 0,
        }


def _view(row: RemoteSession, job: Job | None) -> SessionView:
    return SessionView(
        session_id=row.id, job_id=row.job_id, device_id=row.device_id,
        device_name=job.device_name if job else None, user_id=row.user_id,
        user_email=job.user_email if job else None, relay_id=row.relay_id, host=row.host,
        url=row.url, status=row.status, reason=row.reason, created_at=row.created_at,
        expires_at=row.expires_at, ended_at=row.ended_at)


def device_payload(device: Device) -> dict[str, Any]:
    """Where the device is: the ticket's ``dev`` claim and ``OpenSession``'s ``device``."""
    return {
        "ip": device.ip,
        "hostname": device.hostname,
        "endpoints": [{"scheme": e["scheme"], "port": int(e["port"])}
                      for e in device.ews_endpoints],
    }


def _predecessors(new: SessionStatus) -> tuple[str, ...]:
    return tuple(s.value for s in SessionStatus if can_move(s.value, new.value))


class RemoteSessions:
    """Create, read, end and expire remote sessions; one per portal process."""

    def __init__(self, db: Database, hub: CommandSender, tickets: TokenIssuer,
                 config: SessionConfig, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.hub = hub
        self.tickets = tickets
        self.config = config
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: session id → {stage: ISO time} of the agent's progress reports not yet in job.result
        self._timeline: dict[str, dict[str, str]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._next_prune: datetime | None = None
        #: relay heartbeat interval and timeout (portal.sessions.relay_health)
        self.relay_health = RelayHealthConfig()
        #: session_requested/approved/denied/started/ended, for notifiers
        self.events = SessionEvents()

    def now(self) -> datetime:
        """The service's clock (injected; a fake one in tests)."""
        return self._clock()

    # -- create ------------------------------------------------------------------------------

    async def create(self, actor: Actor, device_id: int, purpose: Purpose | None = None, *,
                     approval: Mapping[str, Any] | None = None) -> SessionView:
        """Start *Open device web page* on ``device_id`` for ``actor``; returns at once with
        status ``verifying`` while ``OpenSession`` runs in the background.

        The customer's effective policy is applied first (:func:`.gate.admit`); ``approval``
        is the approved request's record (``request_id``, ``approved_by``, ...) when the
        policy requires one."""
        now = self._clock()
        purpose = purpose or Purpose()
        async with self.db.transaction() as session:
            device = await device_service.authorize_open_session(session, actor, device_id)
            tree = await load_tree(session, actor.dealer_id)
            customer_id = await device_service.device_customer_id(session, device)
            policy = await admit(
                session, await effective_for_customer(session, customer_id, tree),
                device_id=device.id, user_id=actor.user_id, purpose=purpose,
                approved=approval is not None, now=now)
            if not device.ews_endpoints:
                raise Conflict(f"device {device.id} has no web page endpoint configured; an "
                               "administrator can add one (scheme and port)",
                               code="no_endpoint")
            installation = await session.get(Installation, device.installation_id)
            assert installation is not None  # authorize_open_session checked it
            relay = await self._pick_relay(session)
            session_id = new_session_id()
            address = session_address(session_id, relay.public_domain, relay.public_port)
            expires_at = expiry_for(now, self.config)
            job = await job_service.create_job(session, type=JOB_TYPE, device=device,
                                               user_id=actor.user_id, clock=self._clock)
            await job_service.start_job(session, job, clock=self._clock)
            row = RemoteSession(
                id=session_id, job_id=job.id, device_id=device.id, user_id=actor.user_id,
                relay_id=relay.id, host=address.host, url=address.url,
                redirect_uri=address.redirect_uri, status=SessionStatus.VERIFYING.value,
                created_at=now, expires_at=expires_at,
                mode=policy.mode.value if policy.mode else "full",
                idle_timeout_seconds=(policy.idle_timeout_minutes or 10) * 60,
                allow_panel=bool(policy.allow_panel))
            session.add(row)
            job.result = {"session_id": session_id, "url": address.url,
                          "expires_at": expires_at.isoformat(), "relay": relay.name,
                          "status": row.status, "timeline": {"created": now.isoformat()},
                          "purpose": purpose.as_json(), "mode": row.mode,
                          "idle_timeout_minutes": policy.idle_timeout_minutes,
                          **({"approval": dict(approval)} if approval else {})}
            payload = open_session_payload(
                self, session_id=session_id, installation_id=installation.id, device=device,
                relay=relay, expires_at=expires_at, device_view=device_payload(device),
                certificate_thumbprint=installation.cert_thumbprint,
                site_subnets=installation.site_subnets, row=row)
            await session.flush()
            await audit.record(session, "remote_session.start", actor=actor,
                               target_id=session_id, customer_id=job.customer_id,
                               after={"device_id": device.id, "device": device.name,
                                      "job_id": job.id, "relay": relay.name,
                                      "expires_at": expires_at},
                               clock=self._clock)
            view = _view(row, job)
        self._spawn_open(session_id, installation.id, payload)
        await self.events.publish(SessionStarted(
            session_id=session_id, job_id=view.job_id, customer_id=customer_id,
            device_id=view.device_id, user_email=view.user_email, mode=row.mode))
        return view

    async def _pick_relay(self, session: AsyncSession) -> Relay:
        relays = list((await session.scalars(
            select(Relay).where(Relay.tunnel_address.is_not(None)).order_by(Relay.id))).all())
        counts = dict((await session.execute(
            select(RemoteSession.relay_id, func.count())
            .where(RemoteSession.status.in_(_LIVE)).group_by(RemoteSession.relay_id))).all())
        candidates = placeable(relays, self._clock(), self.relay_health.timeout)
        if not candidates:
            raise Conflict(describe_unplaceable(relays, self._clock(), self.relay_health.timeout),
                           code="no_relay")
        return pick_relay(candidates, {str(k): v for k, v in counts.items() if k is not None})

    def _spawn_open(self, session_id: str, installation_id: int,
                    payload: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._open(session_id, installation_id, payload))
        self._tasks[session_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(session_id, None))

    async def _open(self, session_id: str, installation_id: int,
                    payload: dict[str, Any]) -> None:
        async def progress(report: Any) -> None:
            stage = str(getattr(report, "stage", ""))
            if stage and len(stage) <= 32:
                # when the agent reported each step (control, identity, tunnel phases)
                self._timeline.setdefault(session_id, {}).setdefault(
                    f"agent_{stage}", self._clock().isoformat())
            status = _STAGES.get(stage)
            if status is not None:
                await self.move(session_id, status)

        try:
            result = await self.hub.send_command(installation_id, "OpenSession", payload,
                                                 timeout=self.config.open_timeout_seconds,
                                                 on_progress=progress)
        except ServiceError as exc:
            await self.move(session_id, SessionStatus.FAILED, f"{exc.code}: {exc.message}")
            await self.teardown()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected transport error: fail closed
            log.exception("OpenSession for session %s failed", session_id)
            await self.move(session_id, SessionStatus.FAILED, f"internal_error: {exc}")
            await self.teardown()
            return
        await self._learn_pins(session_id, result.get("identity"))
        await self.move(session_id, SessionStatus.READY)

    async def _learn_pins(self, session_id: str, identity: Any) -> None:
        """Pin what the agent's check saw, at the device's first verified session."""
        if not isinstance(identity, dict):
            return
        async with self.db.transaction() as session:
            row = await session.get(RemoteSession, session_id)
            device = await session.get(Device, row.device_id) if row and row.device_id else None
            if device is not None:
                await device_pins.record_check(session, device, identity, clock=self._clock)

    # -- status ------------------------------------------------------------------------------

    async def move(self, session_id: str, new: SessionStatus, reason: str | None = None, *,
                   at: datetime | None = None, actor: Actor | None = None) -> bool:
        """Apply a status change if the state table allows it; True when it was applied.
        ``at`` is when it happened (default: now), e.g. the ``expires_at`` of an expiry.
        An end or failure is audited in the same transaction, by ``actor`` (None: the
        portal itself, e.g. the time limit)."""
        now = at or self._clock()
        values: dict[str, Any] = {"status": new.value}
        if new in (SessionStatus.ENDED, SessionStatus.FAILED):
            values.update(ended_at=now, reason=reason)
        async with self.db.transaction() as session:
            result = await session.execute(
                update(RemoteSession)
                .where(RemoteSession.id == session_id,
                       RemoteSession.status.in_(_predecessors(new)))
                .values(**values))
            applied = bool(result.rowcount)  # type: ignore[attr-defined]
            if applied:
                row = await session.get(RemoteSession, session_id)
                job = await session.get(Job, row.job_id) if row else None
                if job is not None and job.result is not None:
                    timeline = {**job.result.get("timeline", {}),
                                **self._timeline.get(session_id, {})}
                    timeline.setdefault(new.value, now.isoformat())
                    job.result = {**job.result, "status": new.value, "timeline": timeline,
                                  **({"reason": reason} if reason else {})}
                if job is not None and row is not None and new is SessionStatus.READY:
                    await session_started(session, row, job, now=now)  # outbox, same commit
                if row is not None and new in (SessionStatus.ENDED, SessionStatus.FAILED):
                    await audit.record(
                        session, _end_action(new, row, actor), actor=actor or audit.SYSTEM,
                        target_id=session_id, dealer_id=job.dealer_id if job else None,
                        customer_id=job.customer_id if job else None,
                        after={"status": new.value}, detail=reason, clock=self._clock)
        if applied and new not in (SessionStatus.VERIFYING, SessionStatus.CONNECTING):
            self._timeline.pop(session_id, None)
        if applied and new in (SessionStatus.ENDED, SessionStatus.FAILED):
            await self.events.publish(SessionEnded(session_id=session_id, status=new.value,
                                                   reason=reason))
            task = self._tasks.get(session_id)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        return applied

    # -- read --------------------------------------------------------------------------------

    async def get(self, actor: Actor, session_id: str) -> SessionView:
        """A session whose job ``actor`` can see, else :class:`NotFound`."""
        async with self.db.transaction() as session:
            row = await session.get(RemoteSession, session_id)
            if row is None:
                raise NotFound.of("remote session", session_id)
            try:
                job = await job_service.get_job(session, actor, row.job_id)
            except NotFound:
                raise NotFound.of("remote session", session_id) from None
            return _view(row, job)

    async def list_live(self, actor: Actor) -> list[SessionView]:
        """Live sessions: all in scope for an Administrator, else the actor's own."""
        async with self.db.transaction() as session:
            tree = await load_tree(session, actor.dealer_id)
            admin = scope_for(actor, Action.MANAGE_ACCESS, tree)
            query = (select(RemoteSession, Job).join(Job, Job.id == RemoteSession.job_id)
                     .where(RemoteSession.status.in_(_LIVE),
                            Job.dealer_id == actor.dealer_id)
                     .order_by(RemoteSession.created_at.desc()))
            rows = (await session.execute(query)).all()
            return [_view(row, job) for row, job in rows
                    if row.user_id == actor.user_id or admin.covers(job.customer_id)]

    async def live_for_device(self, actor: Actor, device_id: int) -> list[SessionView]:
        """The actor's live sessions on one device (the device page's countdown)."""
        return [v for v in await self.list_live(actor)
                if v.device_id == device_id and v.user_id == actor.user_id]

    # -- end ---------------------------------------------------------------------------------

    async def end(self, actor: Actor, session_id: str) -> SessionView:
        """End a session (its owner, or an Administrator over the device's customer)."""
        async with self.db.transaction() as session:
            row = await session.get(RemoteSession, session_id)
            if row is None:
                raise NotFound.of("remote session", session_id)
            try:
                job = await job_service.get_job(session, actor, row.job_id)
            except NotFound:
                raise NotFound.of("remote session", session_id) from None
            tree = await load_tree(session, actor.dealer_id)
            is_admin = scope_for(actor, Action.MANAGE_ACCESS, tree).covers(job.customer_id)
            if row.user_id != actor.user_id and not is_admin:
                raise PermissionDenied(
                    "only the session's owner or an administrator can end this session",
                    code="forbidden")
        who = "its owner" if row.user_id == actor.user_id else f"administrator {actor.email}"
        if not await self.move(session_id, SessionStatus.ENDED, f"ended by {who}", actor=actor):
            async with self.db.transaction() as session:
                await audit.record(session, _end_action(SessionStatus.ENDED, row, actor),
                                   actor=actor, target_id=session_id,
                                   customer_id=job.customer_id, clock=self._clock,
                                   detail="asked to end a session that had already ended")
        await self.teardown()
        async with self.db.transaction() as session:
            row = await session.get(RemoteSession, session_id, populate_existing=True)
            job = await session.get(Job, row.job_id) if row else None
            assert row is not None
            return _view(row, job)

    # -- teardown and expiry -----------------------------------------------------------------

    async def expire(self) -> int:
        """End every live session past ``expires_at``; returns how many."""
        now = self._clock()
        async with self.db.transaction() as session:
            due = (await session.execute(select(RemoteSession.id, RemoteSession.expires_at).where(
                RemoteSession.status.in_(_LIVE), RemoteSession.expires_at <= now))).all()
        count = 0
        for session_id, expires_at in due:
            count += await self.move(session_id, SessionStatus.ENDED,
                                     "the session reached its time limit", at=expires_at)
        stuck_before = now - timedelta(seconds=self.config.open_timeout_seconds + 30)
        async with self.db.transaction() as session:
            stuck = list((await session.scalars(select(RemoteSession.id).where(
                RemoteSession.status.in_(("verifying", "connecting")),
                RemoteSession.created_at <= stuck_before))).all())
        for session_id in stuck:
            if session_id not in self._tasks:
                await self.move(session_id, SessionStatus.FAILED,
                                "open_timeout: the device's installation did not report the "
                                "session ready in time; start a new session")
        return count

    async def teardown(self) -> int:
        """Finish the job of every ended/failed session whose job still runs, then send
        ``CloseSession``; returns how many sessions were torn down."""
        async with self.db.transaction() as session:
            rows = (await session.execute(
                select(RemoteSession, Job).join(Job, Job.id == RemoteSession.job_id)
                .where(RemoteSession.status.in_(("ended", "failed")), Job.status == "running")
            )).all()
            closing: list[tuple[str, int | None, str | None]] = []
            for row, job in rows:
                claimed = await session.execute(
                    update(Job).where(Job.id == job.id, Job.status == "running")
                    .values(status="completed" if row.status == "ended" else "failed",
                            finished_at=row.ended_at or self._clock(),
                            error=row.reason if row.status == "failed" else None,
                            result={**(job.result or {}), "status": row.status,
                                    "reason": row.reason}))
                if not claimed.rowcount:  # type: ignore[attr-defined]
                    continue  # another replica got there first
                await session_ended(session, row, job, now=self._clock())  # outbox
                device = await session.get(Device, row.device_id) if row.device_id else None
                closing.append((row.id, device.installation_id if device else None, row.reason))
        for session_id, installation_id, reason in closing:
            if installation_id is not None:
                self._spawn(self._close(session_id, installation_id, reason or "ended"))
        return len(closing)

    async def _close(self, session_id: str, installation_id: int, reason: str) -> None:
        try:
            await self.hub.send_command(installation_id, "CloseSession",
                                        {"session_id": session_id, "reason": reason},
                                        timeout=10.0)
        except ServiceError as exc:
            # The agent's own hard cap and the relay's expiry still end the session.
            log.info("CloseSession for %s not confirmed: %s", session_id, exc.message)

    async def installation_connected(self, installation_id: int) -> int:
        """The installation's control stream is (back) up: resume its live sessions
        (:mod:`.resume`); returns how many ``OpenSession`` commands were re-sent."""
        if self._closing:
            return 0
        return await resume_installation(self, installation_id)

    async def sweep(self) -> None:
        """One pass of the sweeper: expiry, stuck opens, teardown; once a minute, forget
        installation revocations no relay needs any more."""
        await self.expire()
        await self.fail_lost_relays()
        await self.teardown()
        now = self._clock()
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + timedelta(minutes=1)
            async with self.db.transaction() as session:
                await prune_revocations(session, now)

    async def fail_lost_relays(self) -> int:
        """Fail the live sessions of relays that stopped heartbeating (and end those of
        relays that drained and stopped); one replica at a time (:mod:`.relay_health`)."""
        async def move(session_id: str, status: SessionStatus, reason: str) -> bool:
            return await self.move(session_id, status, reason)

        return await sweep_lost_relays(self.db, self._clock(), self.relay_health.timeout, move)

    async def run_sweeper(self, interval: float = 1.0) -> None:
        """Run :meth:`sweep` every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("remote session sweep failed; retrying")
            await asyncio.sleep(interval)

    # -- relay view ----------------------------------------------------------------------------

    async def for_relay(self, session: AsyncSession, relay_id: int,
                        session_id: str) -> RemoteSession:
        """The session row if it is pinned to ``relay_id``, else :class:`NotFound`."""
        row = await session.get(RemoteSession, session_id)
        if row is None or row.relay_id != relay_id:
            raise NotFound.of("remote session", session_id)
        return row

    # -- lifecycle ---------------------------------------------------------------------------

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Cancel background work (open and close commands) and wait for it."""
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _end_action(new: SessionStatus, row: RemoteSession, actor: Actor | None) -> str:
    if new is SessionStatus.FAILED:
        return "remote_session.fail"
    if actor is not None and row.user_id != actor.user_id:
        return "remote_session.terminate"
    return "remote_session.end"


async def owner_email(session: AsyncSession, row: RemoteSession) -> str | None:
    """The e-mail of the session's owner (for the relay's log)."""
    if row.user_id is None:
        return None
    user = await session.get(User, row.user_id)
    return user.email if user else None
