"""Session requests: a session that waits for a Customer Approver's answer.

::

    request ─► policy needs no approval ─► the session opens at once (RemoteSessions.create)
        └──► approval required ─► SessionRequest(pending, expires_at = now + 15 min default)
                 approve (approver / administrator, not the requester) ─► approved → the
                     session opens for the requester, the approval recorded on its job
                 deny (with a reason)                                   ─► denied
                 nobody answers before expires_at                       ─► expired

An approval is for one session: the request opens exactly one (its status becomes ``used``
with the session's id). Answering needs the ``approve_session`` action over the device's
customer; a request on a customer the caller cannot see is invisible (404), and anyone who
sees the customer (a Viewer too) can read it. The requester sees their own requests,
including who denied them and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.notifications.session_events import request_event
from ewsgate.portal.policy import Approval
from ewsgate.portal.services import audit
from ewsgate.portal.services import devices as device_service
from ewsgate.portal.services.access import Action, Actor, actor_for, load_tree, scope_for
from ewsgate.portal.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ewsgate.portal.services.policies import effective_for_customer
from ewsgate.portal.sessions.events import SessionApproved, SessionDenied, SessionRequested
from ewsgate.portal.sessions.gate import MAX_REASON, Purpose, admit
from ewsgate.portal.sessions.service import RemoteSessions, SessionView
from ewsgate.portal.store.models import SessionRequest, User

__all__ = ["RequestOutcome", "RequestView", "SessionRequests"]


@dataclass(frozen=True, slots=True)
class RequestView:
    """A session request as the API, the UI and the approver see it."""

    id: int
    device_id: int | None
    device_name: str | None
    customer_id: int | None
    user_email: str | None
    status: str
    reason: str | None
    ticket: str | None
    read_only: bool
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None
    session_id: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "device_id": self.device_id, "device_name": self.device_name,
            "customer_id": self.customer_id, "user_email": self.user_email,
            "status": self.status, "reason": self.reason, "ticket": self.ticket,
            "read_only": self.read_only, "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decided_by": self.decided_by, "decision_reason": self.decision_reason,
            "session_id": self.session_id,
        }


def _view(row: SessionRequest) -> RequestView:
    return RequestView(
        id=row.id, device_id=row.device_id, device_name=row.device_name,
        customer_id=row.customer_id, user_email=row.user_email, status=row.status,
        reason=row.reason, ticket=row.ticket, read_only=row.read_only,
        created_at=row.created_at, expires_at=row.expires_at, decided_at=row.decided_at,
        decided_by=row.decided_by, decision_reason=row.decision_reason,
        session_id=row.session_id)


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What asking for a session gave: a session at once, or a pending request."""

    session: SessionView | None
    request: RequestView | None


class SessionRequests:
    """Ask for, answer and expire session requests; wraps :class:`RemoteSessions`."""

    def __init__(self, sessions: RemoteSessions) -> None:
        self.sessions = sessions

    @property
    def events(self) -> Any:
        return self.sessions.events

    async def ask(self, actor: Actor, device_id: int, purpose: Purpose) -> RequestOutcome:
        """Open a session now when the policy allows it; else record a pending request."""
        now = self.sessions.now()
        async with self.sessions.db.transaction() as session:
            device = await device_service.authorize_open_session(session, actor, device_id)
            tree = await load_tree(session, actor.dealer_id)
            customer_id = await device_service.device_customer_id(session, device)
            policy = await effective_for_customer(session, customer_id, tree)
            if policy.approval is not Approval.REQUIRED:
                row = None
            else:
                # every other rule applies at the request too, so nobody waits for nothing
                await admit(session, policy, device_id=device.id, user_id=actor.user_id,
                            purpose=purpose, approved=True, now=now)
                row = SessionRequest(
                    dealer_id=actor.dealer_id, customer_id=customer_id, device_id=device.id,
                    device_name=device.name, user_id=actor.user_id, user_email=actor.email,
                    status="pending", reason=purpose.reason, ticket=purpose.ticket,
                    read_only=purpose.read_only, created_at=now,
                    expires_at=now + timedelta(minutes=policy.approval_expiry_minutes or 15))
                session.add(row)
                await session.flush()
                view = _view(row)
                await audit.record(session, "session_request.create", actor=actor,
                                   target_id=row.id, customer_id=customer_id,
                                   after={"device_id": device.id, **purpose.as_json()},
                                   clock=self.sessions.now)
                await request_event(session, "session_requested", row, now=now)  # outbox
        if row is None:
            return RequestOutcome(await self.sessions.create(actor, device_id, purpose), None)
        await self.events.publish(SessionRequested(
            request_id=view.id, customer_id=view.customer_id, device_id=view.device_id,
            device_name=view.device_name, user_email=view.user_email, reason=view.reason,
            ticket=view.ticket, read_only=view.read_only, expires_at=view.expires_at))
        return RequestOutcome(None, view)

    async def _visible(self, session: AsyncSession, actor: Actor,
                       request_id: int) -> tuple[SessionRequest, bool]:
        """The request and whether ``actor`` may answer it; NotFound when invisible."""
        row = await session.get(SessionRequest, request_id)
        if row is None or row.dealer_id != actor.dealer_id:
            raise NotFound.of("session request", request_id)
        tree = await load_tree(session, actor.dealer_id)
        answer = scope_for(actor, Action.APPROVE_SESSION, tree).covers(row.customer_id)
        seen = scope_for(actor, Action.VIEW, tree).covers(row.customer_id)
        if row.user_id != actor.user_id and not seen:
            raise NotFound.of("session request", request_id)
        return row, answer

    async def get(self, actor: Actor, request_id: int) -> RequestView:
        """A request the actor made or may answer."""
        await self.expire()
        async with self.sessions.db.transaction() as session:
            row, _ = await self._visible(session, actor, request_id)
            return _view(row)

    async def list(self, actor: Actor, *, status: str | None = "pending") -> list[RequestView]:
        """Requests the actor may answer (in scope) or made, newest first."""
        await self.expire()
        async with self.sessions.db.transaction() as session:
            tree = await load_tree(session, actor.dealer_id)
            answer = scope_for(actor, Action.APPROVE_SESSION, tree)
            query = select(SessionRequest).where(SessionRequest.dealer_id == actor.dealer_id)
            if status:
                query = query.where(SessionRequest.status == status)
            rows = (await session.scalars(query.order_by(SessionRequest.id.desc()))).all()
            return [_view(r) for r in rows
                    if r.user_id == actor.user_id or answer.covers(r.customer_id)]

    async def approve(self, actor: Actor, request_id: int,
                      note: str | None = None) -> tuple[RequestView, SessionView]:
        """Approve a pending request and open its one session for the requester."""
        now = self.sessions.now()
        note = _note(note)
        await self.expire()
        async with self.sessions.db.transaction() as session:
            row, answer = await self._visible(session, actor, request_id)
            self._check_answer(row, actor, answer)
            requester = await session.get(User, row.user_id) if row.user_id else None
            if requester is None or not requester.active:
                raise Conflict("the requester's account no longer exists or is disabled; "
                               "the request cannot be approved", code="requester_gone")
            owner = await actor_for(session, requester)
            claimed = await session.execute(
                update(SessionRequest)
                .where(SessionRequest.id == request_id, SessionRequest.status == "pending")
                .values(status="approved", decided_at=now, decided_by=actor.email,
                        decision_reason=note))
            if not claimed.rowcount:  # type: ignore[attr-defined]
                raise Conflict("this request was answered a moment ago by someone else",
                               code="request_answered")
            await audit.record(session, "session_request.approve", actor=actor,
                               target_id=request_id, customer_id=row.customer_id,
                               before={"status": "pending"},
                               after={"status": "approved", "note": note},
                               clock=self.sessions.now)
            purpose = Purpose(reason=row.reason, ticket=row.ticket, read_only=row.read_only)
            device_id = row.device_id
        if device_id is None:
            raise Conflict("the device of this request was deleted", code="device_gone")
        approval = {"request_id": request_id, "approved_by": actor.email,
                    "approved_at": now.isoformat(), "note": note}
        try:
            view = await self.sessions.create(owner, device_id, purpose, approval=approval)
        except Exception:
            async with self.sessions.db.transaction() as session:
                await session.execute(update(SessionRequest).where(
                    SessionRequest.id == request_id).values(status="pending", decided_at=None,
                                                             decided_by=None,
                                                             decision_reason=None))
            raise
        async with self.sessions.db.transaction() as session:
            fresh = await session.get(SessionRequest, request_id)
            assert fresh is not None
            fresh.status = "used"
            fresh.session_id = view.session_id
            await session.flush()
            result = _view(fresh)
            await request_event(session, "session_approved", fresh, now=now,
                                decided_by=actor.email, note=note)
        await self.events.publish(SessionApproved(
            request_id=request_id, customer_id=result.customer_id, approved_by=actor.email,
            user_email=result.user_email, session_id=view.session_id))
        return result, view

    async def deny(self, actor: Actor, request_id: int, note: str | None) -> RequestView:
        """Deny a pending request; the requester sees who denied it and ``note``."""
        now = self.sessions.now()
        note = _note(note)
        if not note:
            raise InvalidInput("say why you deny the request (the technician sees it)",
                               code="reason_required", field="reason")
        await self.expire()
        async with self.sessions.db.transaction() as session:
            row, answer = await self._visible(session, actor, request_id)
            self._check_answer(row, actor, answer)
            claimed = await session.execute(
                update(SessionRequest)
                .where(SessionRequest.id == request_id, SessionRequest.status == "pending")
                .values(status="denied", decided_at=now, decided_by=actor.email,
                        decision_reason=note))
            if not claimed.rowcount:  # type: ignore[attr-defined]
                raise Conflict("this request was answered a moment ago by someone else",
                               code="request_answered")
            await audit.record(session, "session_request.deny", actor=actor,
                               target_id=request_id, customer_id=row.customer_id,
                               before={"status": "pending"},
                               after={"status": "denied", "reason": note},
                               clock=self.sessions.now)
            await session.refresh(row)
            result = _view(row)
            await request_event(session, "session_denied", row, now=now,
                                decided_by=actor.email, note=note)
        await self.events.publish(SessionDenied(
            request_id=request_id, customer_id=result.customer_id, denied_by=actor.email,
            reason=note, user_email=result.user_email))
        return result

    @staticmethod
    def _check_answer(row: SessionRequest, actor: Actor, answer: bool) -> None:
        if not answer:
            raise PermissionDenied("only a Customer Approver or an Administrator over this "
                                   "device's customer can answer this request",
                                   code="forbidden")
        if row.user_id == actor.user_id:
            raise PermissionDenied("you cannot approve or deny your own request; another "
                                   "approver must answer it", code="own_request")
        if row.status != "pending":
            raise Conflict(f"this request is already {row.status}"
                           + (f" (by {row.decided_by})" if row.decided_by else ""),
                           code="request_answered")

    async def expire(self) -> int:
        """Mark every pending request past ``expires_at`` expired; returns how many."""
        now = self.sessions.now()
        async with self.sessions.db.transaction() as session:
            due = list((await session.scalars(select(SessionRequest).where(
                SessionRequest.status == "pending", SessionRequest.expires_at <= now))).all())
            for row in due:
                row.status = "expired"
                row.decision_reason = "nobody answered the request in time; ask again"
            await session.flush()
            for row in due:
                await request_event(session, "session_denied", row, now=now,
                                    note=row.decision_reason)
            gone = [(r.id, r.customer_id, r.user_email) for r in due]
        for request_id, customer_id, email in gone:
            await self.events.publish(SessionDenied(
                request_id=request_id, customer_id=customer_id, denied_by=None,
                reason="expired unanswered", user_email=email))
        return len(gone)


def _note(note: object) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise InvalidInput("reason must be text", code="invalid", field="reason")
    note = note.strip()
    if len(note) > MAX_REASON:
        raise InvalidInput(f"reason is {len(note)} characters long; at most {MAX_REASON}",
                           code="too_long", field="reason")
    return note or None
