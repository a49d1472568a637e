"""Session events: a small typed hook that notifiers subscribe to.

The service layer publishes a fact after the transaction that made it true has committed;
subscribers (e-mail, webhooks) get a frozen event and must not block: :meth:`SessionEvents.
publish` runs each subscriber and logs its failure, so a failing notifier never stops a session
or loses the event for the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "SessionApproved",
    "SessionDenied",
    "SessionEnded",
    "SessionEvent",
    "SessionEvents",
    "SessionRequested",
    "SessionStarted",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRequested:
    """A session request waits for an approver's answer."""

    request_id: int
    customer_id: int | None
    device_id: int | None
    device_name: str | None
    user_email: str | None
    reason: str | None
    ticket: str | None
    read_only: bool
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionApproved:
    """An approver approved a request (the session is being opened)."""

    request_id: int
    customer_id: int | None
    approved_by: str
    user_email: str | None
    session_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDenied:
    """An approver denied a request, or it expired unanswered (``denied_by`` None)."""

    request_id: int
    customer_id: int | None
    denied_by: str | None
    reason: str | None
    user_email: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted:
    """A session was created (its job runs)."""

    session_id: str
    job_id: int
    customer_id: int | None
    device_id: int | None
    user_email: str | None
    mode: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded:
    """A session ended or failed; ``reason`` says why."""

    session_id: str
    status: str
    reason: str | None


SessionEvent = SessionRequested | SessionApproved | SessionDenied | SessionStarted | SessionEnded
Subscriber = Callable[[SessionEvent], Awaitable[None] | None]


class SessionEvents:
    """Subscribers of session events, one per portal process."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def publish(self, event: SessionEvent) -> None:
        """Give ``event`` to every subscriber; one's failure is logged, never raised."""
        for subscriber in list(self._subscribers):
            try:
                result = subscriber(event)
                if result is not None:
                    await result
            except Exception:
                log.exception("session event subscriber %r failed on %s", subscriber,
                              type(event).__name__)
