"""The remote session's states and the one table of allowed transitions.

::

    verifying ──► connecting ──► ready
        │  ╲           │           │
        │   ╲──────────┼──────────►│        (an agent may report a later step directly)
        ▼              ▼           ▼
      failed  ◄──── any live ────► ended

Live states (``verifying``, ``connecting``, ``ready``) only move forward; ``ended`` and
``failed`` are terminal. A progress report that would move a session backwards, or any report
about a finished session, is ignored rather than applied (reports can arrive late and out of
order over the control stream); :func:`can_move` is the single place that decides.

The job of the session follows: it is *running* while the session is live, *completed* when it
ended (by its owner, an administrator, expiry, or the device's Remote Technician switch) and
*failed* when it failed, with the reason.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["LIVE", "TERMINAL", "SessionStatus", "can_move"]


class SessionStatus(StrEnum):
    """What ``GET /api/v1/remote-sessions/{id}`` reports as ``status``."""

    VERIFYING = "verifying"
    CONNECTING = "connecting"
    READY = "ready"
    ENDED = "ended"
    FAILED = "failed"


LIVE = frozenset({SessionStatus.VERIFYING, SessionStatus.CONNECTING, SessionStatus.READY})
TERMINAL = frozenset({SessionStatus.ENDED, SessionStatus.FAILED})

_ORDER = {SessionStatus.VERIFYING: 0, SessionStatus.CONNECTING: 1, SessionStatus.READY: 2}

_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.VERIFYING: frozenset(
        {SessionStatus.CONNECTING, SessionStatus.READY, SessionStatus.FAILED, SessionStatus.ENDED}
    ),
    SessionStatus.CONNECTING: frozenset(
        {SessionStatus.READY, SessionStatus.FAILED, SessionStatus.ENDED}
    ),
    SessionStatus.READY: frozenset({SessionStatus.FAILED, SessionStatus.ENDED}),
    SessionStatus.ENDED: frozenset(),
    SessionStatus.FAILED: frozenset(),
}


def can_move(current: str, new: str) -> bool:
    """Whether a session in ``current`` may move to ``new`` (same state: no)."""
    return SessionStatus(new) in _TRANSITIONS[SessionStatus(current)]
