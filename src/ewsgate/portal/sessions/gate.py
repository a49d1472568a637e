"""Admission of a new session under the customer's effective policy.

:func:`admit` runs inside the transaction that creates the session, after the role check
(:func:`~ewsgate.portal.services.devices.authorize_open_session`), and raises unless the
policy lets this session start now::

    reason required  and no reason given            → InvalidInput  reason_required
    outside every hours window                       → Conflict      outside_hours
    live sessions on the device ≥ per-device quota   → Conflict      quota_device
    the user's live sessions there ≥ per-user quota  → Conflict      quota_user
    approval required and no approved request        → Conflict      approval_required

It returns the policy of this session (the user may ask for read-only on their own), whose mode
and idle timeout the relay enforces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.policy import Approval, Policy, Reason, with_user_choice
from ewsgate.portal.services.errors import Conflict, InvalidInput
from ewsgate.portal.sessions.status import LIVE
from ewsgate.portal.store.models import RemoteSession

__all__ = ["MAX_REASON", "MAX_TICKET", "Purpose", "admit", "clean_purpose"]

MAX_REASON = 2000
MAX_TICKET = 200
_LIVE = tuple(s.value for s in LIVE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Purpose:
    """Why a session is wanted, as the requester said it."""

    reason: str | None = None
    ticket: str | None = None
    read_only: bool = False

    def as_json(self) -> dict[str, object]:
        return {"reason": self.reason, "ticket": self.ticket, "read_only": self.read_only}


def clean_purpose(reason: object, ticket: object, read_only: object) -> Purpose:
    """A :class:`Purpose` from untrusted input (trimmed, bounded; blank means none)."""
    def text(value: object, name: str, limit: int) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be text", code="invalid", field=name)
        value = value.strip()
        if len(value) > limit:
            raise InvalidInput(f"{name} is {len(value)} characters long; at most {limit}",
                               code="too_long", field=name)
        return value or None
    if read_only not in (None, True, False):
        raise InvalidInput("read_only must be true or false", code="invalid", field="read_only")
    return Purpose(reason=text(reason, "reason", MAX_REASON),
                   ticket=text(ticket, "ticket", MAX_TICKET), read_only=bool(read_only))


async def admit(session: AsyncSession, policy: Policy, *, device_id: int, user_id: int,
                purpose: Purpose, approved: bool, now: datetime) -> Policy:
    """Raise unless ``policy`` lets this session start now; returns the session's policy."""
    if policy.reason is Reason.REQUIRED and not purpose.reason:
        raise InvalidInput("this customer's policy requires a reason for every Remote "
                           "Technician session; say why you need the device's web page (and "
                           "give a ticket reference if you have one)",
                           code="reason_required", field="reason")
    if not policy.allows_start(now):
        hours = "; ".join(
            f"{r.timezone}: " + ", ".join(f"{w['day']} {w['start']}-{w['end']}"
                                         for w in (x.as_json() for x in r.windows))
            for r in policy.hours)
        raise Conflict(f"this customer allows Remote Technician sessions only at set hours "
                       f"({hours}); try again inside a window or ask the customer",
                       code="outside_hours")
    live = select(func.count()).select_from(RemoteSession).where(
        RemoteSession.device_id == device_id, RemoteSession.status.in_(_LIVE))
    on_device = int(await session.scalar(live) or 0)
    if policy.max_sessions_per_device is not None and \
            on_device >= policy.max_sessions_per_device:
        raise Conflict(f"this device already has {on_device} live session(s), the most this "
                       f"customer allows ({policy.max_sessions_per_device}); wait for one to "
                       "end", code="quota_device")
    mine = int(await session.scalar(live.where(RemoteSession.user_id == user_id)) or 0)
    if policy.max_sessions_per_user_per_device is not None and \
            mine >= policy.max_sessions_per_user_per_device:
        raise Conflict(f"you already have {mine} live session(s) on this device, the most "
                       f"this customer allows ({policy.max_sessions_per_user_per_device}); "
                       "use it or end it first", code="quota_user")
    if policy.approval is Approval.REQUIRED and not approved:
        raise Conflict("this customer's policy requires approval for each session; request "
                       "one (POST /api/v1/devices/{id}/session-requests or the form on the "
                       "device page) and a Customer Approver will answer",
                       code="approval_required")
    return with_user_choice(policy, read_only=purpose.read_only)
