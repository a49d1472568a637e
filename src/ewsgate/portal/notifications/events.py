"""The notification events: what happened, in a form every channel can render.

An event kind is a short name (``session_started``); :func:`~.outbox.notify` accepts any kind
in :data:`EVENT_KINDS`, so an event added later (the approval workflow's ``session_requested``,
``session_approved``, ``session_denied``) is one call where it happens.
"""

from __future__ import annotations

from typing import Final

__all__ = ["APPROVER_EVENTS", "CONTACT_EVENTS", "EVENT_KINDS", "check_kind"]

#: events the customer's contacts hear of
CONTACT_EVENTS: Final = ("session_started", "session_ended", "session_approved",
                         "session_denied")
#: events the customer's approvers hear of (a request waiting for their answer)
APPROVER_EVENTS: Final = ("session_requested",)
EVENT_KINDS: Final = (*CONTACT_EVENTS, *APPROVER_EVENTS, "test")


def check_kind(kind: str) -> str:
    """``kind`` if known; a :class:`ValueError` that names the known kinds otherwise."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown notification event {kind!r}; known: {', '.join(EVENT_KINDS)}")
    return kind
