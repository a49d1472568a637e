"""Every text of a notification a person reads, in one place.

English is the source language; each string goes through :func:`_` so that a gettext
catalogue (``pt_BR``) can translate it later without touching the callers. The webhook body is
data, not text: it carries the same facts as fields (see :func:`webhook_body`).
"""

from __future__ import annotations

import gettext
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EmailText", "email_text", "webhook_body"]

_translations: gettext.NullTranslations = gettext.NullTranslations()


def _(message: str) -> str:
    return _translations.gettext(message)


@dataclass(frozen=True, slots=True)
class EmailText:
    """Subject and plain-text body of one e-mail."""

    subject: str
    body: str


def _subjects() -> dict[str, str]:
    return {
        "session_requested": _("Remote Technician: {user} asks to open {device}"),
        "session_approved": _("Remote Technician: a session on {device} was approved"),
        "session_denied": _("Remote Technician: a session on {device} was denied"),
        "session_started": _("Remote Technician: {user} opened {device}"),
        "session_ended": _("Remote Technician: the session on {device} ended"),
        "test": _("Remote Technician: test notification"),
    }


def _leads() -> dict[str, str]:
    return {
        "session_requested": _("{user} asks to open the web page of {device} ({customer}) "
                               "through Remote Technician. The request waits for your answer "
                               "in the portal."),
        "session_approved": _("{approver} approved a Remote Technician session on {device} "
                              "({customer}) for {user}."),
        "session_denied": _("{approver} denied a Remote Technician session on {device} "
                            "({customer}) for {user}."),
        "session_started": _("{user} opened the web page of {device} ({customer}) through "
                             "Remote Technician."),
        "session_ended": _("The Remote Technician session of {user} on {device} ({customer}) "
                           "ended."),
        "test": _("This is a test of the notifications of {customer}. Nothing happened to a "
                  "device."),
    }


def _facts() -> list[tuple[str, str]]:
    return [("reason", _("Reason")), ("ticket", _("Ticket")), ("session_id", _("Session")),
            ("job_id", _("Job")), ("at", _("When (UTC)")), ("ended_reason", _("How it ended")),
            ("expires_at", _("Ends at the latest (UTC)")), ("url", _("In the portal"))]


def email_text(kind: str, data: Mapping[str, Any]) -> EmailText:
    """The e-mail for event ``kind`` with the event's ``data``."""
    names = {"user": data.get("user_email") or _("a user"),
             "device": data.get("device_name") or _("a device"),
             "customer": data.get("customer_name") or _("your organisation"),
             "approver": data.get("approver_email") or _("an approver")}
    subject = _subjects()[kind].format(**names)
    lines = [_leads()[kind].format(**names), ""]
    for key, label in _facts():
        value = data.get(key)
        if value not in (None, ""):
            lines.append(f"{label}: {value}")
    lines += ["", _("You receive this because your address is a notification contact of "
                    "{customer} in the ewsgate portal; an administrator can change the "
                    "contacts.").format(**names)]
    return EmailText(subject=subject, body="\n".join(lines) + "\n")


def webhook_body(notification_id: int, kind: str, data: Mapping[str, Any]) -> bytes:
    """The webhook's JSON body: the event's kind, id and facts (compact, UTF-8)."""
    document = {"id": notification_id, "type": kind, "data": dict(data)}
    return json.dumps(document, separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False).encode()
