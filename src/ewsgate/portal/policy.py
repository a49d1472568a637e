"""The customer policy model: what a customer allows Remote Technician to do on its devices.

Pure: no database, no clock of its own, no I/O. A customer may set a policy; its children
inherit it and may only tighten it. :func:`effective_policy` folds the chain from the root
customer down to the device's customer, taking at each setting the stricter of the inherited
and the local value, so a child can never loosen what a parent decided. The root customer's
own values replace the defaults (:data:`DEFAULT_POLICY`) where it sets them::

    setting        values (loose → strict)          combined by
    approval       none → required                   the stricter
    reason         optional → required               the stricter
    mode           full → read-only                  the stricter
    allow_panel    True → False (read-only WS)       logical and
    idle_timeout   minutes, 1..30 (default 10)       the minimum
    hours          weekly windows or None (always)   the intersection
    quota          per device, per device per user   the minimum

``hours`` are in the customer's time zone (IANA name, :mod:`zoneinfo`); a child with its own
windows keeps only the minutes both allow, each side read in its own zone. Times outside every
window refuse new sessions (live ones run to their end).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_POLICY",
    "MAX_IDLE_TIMEOUT_MINUTES",
    "Approval",
    "HoursRule",
    "Mode",
    "Policy",
    "PolicyError",
    "Reason",
    "Window",
    "effective_policy",
    "parse_policy",
    "with_user_choice",
]

MAX_IDLE_TIMEOUT_MINUTES = 30
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class PolicyError(ValueError):
    """A policy document that cannot be accepted; the message says which field and why."""


class Approval(StrEnum):
    NONE = "none"
    REQUIRED = "required"


class Reason(StrEnum):
    OPTIONAL = "optional"
    REQUIRED = "required"


class Mode(StrEnum):
    FULL = "full"
    READ_ONLY = "read-only"


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """One weekly window: ``day`` (0 = Monday) from ``start`` to ``end`` minutes after
    midnight (``end`` > ``start``; 1440 is the end of the day)."""

    day: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.day <= 6:
            raise PolicyError(f"hours: day {self.day} is not 0 (Monday) to 6 (Sunday)")
        if not 0 <= self.start < self.end <= 1440:
            raise PolicyError(f"hours: window {self.start}-{self.end} on {DAYS[self.day]} must "
                              "start before it ends, within the day (00:00-24:00)")

    def as_json(self) -> dict[str, str]:
        return {"day": DAYS[self.day], "start": _hhmm(self.start), "end": _hhmm(self.end)}


@dataclass(frozen=True, slots=True, kw_only=True)
class HoursRule:
    """Weekly windows read in ``timezone``; a session may start only inside one of them."""

    timezone: str
    windows: tuple[Window, ...]

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PolicyError(f"hours: unknown time zone {self.timezone!r}; use an IANA name "
                              "such as 'America/Sao_Paulo'") from None

    def allows(self, when: datetime) -> bool:
        """Whether the aware instant ``when`` falls inside a window (in this rule's zone)."""
        local = when.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        return any(w.day == local.weekday() and w.start <= minute < w.end for w in self.windows)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """One customer's own settings (all optional: None inherits) or an effective policy."""

    approval: Approval | None = None
    reason: Reason | None = None
    mode: Mode | None = None
    allow_panel: bool | None = None
    idle_timeout_minutes: int | None = None
    #: every rule must allow a start (the chain's rules are all kept: an intersection)
    hours: tuple[HoursRule, ...] = ()
    max_sessions_per_device: int | None = None
    max_sessions_per_user_per_device: int | None = None
    approval_expiry_minutes: int | None = None

    def __post_init__(self) -> None:
        if self.idle_timeout_minutes is not None and not (
                1 <= self.idle_timeout_minutes <= MAX_IDLE_TIMEOUT_MINUTES):
            raise PolicyError(f"idle_timeout_minutes must be 1 to {MAX_IDLE_TIMEOUT_MINUTES} "
                              f"(the hard cap of a session is 30 minutes), not "
                              f"{self.idle_timeout_minutes}")
        for name in ("max_sessions_per_device", "max_sessions_per_user_per_device"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 100:
                raise PolicyError(f"{name} must be 1 to 100, not {value}")
        if self.approval_expiry_minutes is not None and not (
                1 <= self.approval_expiry_minutes <= 24 * 60):
            raise PolicyError("approval_expiry_minutes must be 1 to 1440, not "
                              f"{self.approval_expiry_minutes}")

    def allows_start(self, when: datetime) -> bool:
        """Whether every hours rule of the policy allows a session to start at ``when``."""
        return all(rule.allows(when) for rule in self.hours)

    def as_json(self) -> dict[str, Any]:
        """The REST representation (None: not set here, inherited)."""
        return {
            "approval": self.approval.value if self.approval else None,
            "reason": self.reason.value if self.reason else None,
            "mode": self.mode.value if self.mode else None,
            "allow_panel": self.allow_panel,
            "idle_timeout_minutes": self.idle_timeout_minutes,
            "hours": [{"timezone": r.timezone, "windows": [w.as_json() for w in r.windows]}
                      for r in self.hours],
            "max_sessions_per_device": self.max_sessions_per_device,
            "max_sessions_per_user_per_device": self.max_sessions_per_user_per_device,
            "approval_expiry_minutes": self.approval_expiry_minutes,
        }


#: what applies where no customer in the chain says otherwise
DEFAULT_POLICY = Policy(
    approval=Approval.NONE, reason=Reason.OPTIONAL, mode=Mode.FULL, allow_panel=True,
    idle_timeout_minutes=10, hours=(), max_sessions_per_device=3,
    max_sessions_per_user_per_device=1, approval_expiry_minutes=15)

_ORDER: dict[type[StrEnum], tuple[StrEnum, ...]] = {
    Approval: (Approval.NONE, Approval.REQUIRED),
    Reason: (Reason.OPTIONAL, Reason.REQUIRED),
    Mode: (Mode.FULL, Mode.READ_ONLY),
}


E = TypeVar("E", bound=StrEnum)


def _stricter(a: E | None, b: E | None) -> E | None:
    if a is None or b is None:
        return b if a is None else a
    order = _ORDER[type(a)]
    return a if order.index(a) >= order.index(b) else b


def _lower(a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return b if a is None else a
    return min(a, b)


def _tighten(inherited: Policy, local: Policy) -> Policy:
    panel = None if inherited.allow_panel is None and local.allow_panel is None else (
        inherited.allow_panel is not False and local.allow_panel is not False)
    return Policy(
        approval=_stricter(inherited.approval, local.approval),
        reason=_stricter(inherited.reason, local.reason),
        mode=_stricter(inherited.mode, local.mode),
        allow_panel=panel,
        idle_timeout_minutes=_lower(inherited.idle_timeout_minutes, local.idle_timeout_minutes),
        hours=inherited.hours + tuple(r for r in local.hours if r not in inherited.hours),
        max_sessions_per_device=_lower(inherited.max_sessions_per_device,
                                       local.max_sessions_per_device),
        max_sessions_per_user_per_device=_lower(inherited.max_sessions_per_user_per_device,
                                                local.max_sessions_per_user_per_device),
        # a shorter wait for an answer is the stricter one
        approval_expiry_minutes=_lower(inherited.approval_expiry_minutes,
                                       local.approval_expiry_minutes),
    )


def _filled(policy: Policy, defaults: Policy) -> Policy:
    return Policy(**{
        name: getattr(defaults, name) if getattr(policy, name) is None else getattr(policy, name)
        for name in ("approval", "reason", "mode", "allow_panel", "idle_timeout_minutes",
                     "max_sessions_per_device", "max_sessions_per_user_per_device",
                     "approval_expiry_minutes")}, hours=policy.hours)


def effective_policy(chain: Sequence[Policy | None], *,
                     defaults: Policy = DEFAULT_POLICY) -> Policy:
    """The policy in force for a device, from its customer chain **root first** (the root
    customer, then each child down to the device's own customer; None: no policy set).

    Each setting is the strictest that any customer of the chain set. The root customer's
    own values stand in for the defaults (:data:`DEFAULT_POLICY`; an Administrator may, say,
    allow two sessions per user on a top-level customer); from there down, every child only
    tightens what it inherits.
    """
    if not chain:
        return defaults
    root, *below = chain
    result = _filled(root or Policy(), defaults)
    for local in below:
        if local is not None:
            result = _tighten(result, local)
    return result


def with_user_choice(policy: Policy, *, read_only: bool) -> Policy:
    """The policy of one session whose requester asked for read-only on their own."""
    return replace(policy, mode=Mode.READ_ONLY) if read_only else policy


# -- parsing (the API's and the UI's input) ----------------------------------------------------


def parse_policy(data: Mapping[str, Any]) -> Policy:
    """A :class:`Policy` from its JSON form; :class:`PolicyError` names the field at fault."""
    known = set(DEFAULT_POLICY.as_json())
    unknown = sorted(set(data) - known)
    if unknown:
        raise PolicyError(f"unknown policy field(s) {', '.join(unknown)}; the fields are "
                          f"{', '.join(sorted(known))}")

    def enum(name: str, kind: type[E]) -> E | None:
        value = data.get(name)
        if value is None:
            return None
        try:
            return kind(value)
        except ValueError:
            raise PolicyError(f"{name} must be one of {', '.join(e.value for e in kind)}, "
                              f"not {value!r}") from None

    def integer(name: str) -> int | None:
        value = data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError(f"{name} must be a whole number, not {value!r}")
        return value

    panel = data.get("allow_panel")
    if panel is not None and not isinstance(panel, bool):
        raise PolicyError(f"allow_panel must be true or false, not {panel!r}")
    return Policy(
        approval=enum("approval", Approval), reason=enum("reason", Reason),
        mode=enum("mode", Mode), allow_panel=panel,
        idle_timeout_minutes=integer("idle_timeout_minutes"),
        hours=tuple(_parse_hours(r) for r in _list(data.get("hours"), "hours")),
        max_sessions_per_device=integer("max_sessions_per_device"),
        max_sessions_per_user_per_device=integer("max_sessions_per_user_per_device"),
        approval_expiry_minutes=integer("approval_expiry_minutes"))


def _list(value: Any, name: str) -> Iterable[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PolicyError(f"{name} must be a list")
    return value


def _parse_hours(rule: Any) -> HoursRule:
    if not isinstance(rule, dict) or not isinstance(rule.get("timezone"), str):
        raise PolicyError("hours: each rule is {\"timezone\": \"Area/City\", \"windows\": [...]}")
    windows = []
    for w in _list(rule.get("windows"), "hours.windows"):
        if not isinstance(w, dict) or w.get("day") not in DAYS:
            raise PolicyError(f"hours: each window is {{\"day\": one of {', '.join(DAYS)}, "
                              "\"start\": \"HH:MM\", \"end\": \"HH:MM\"}")
        windows.append(Window(day=DAYS.index(w["day"]), start=_minutes(w.get("start")),
                              end=_minutes(w.get("end"))))
    if not windows:
        raise PolicyError("hours: a rule needs at least one window (omit hours for 'always')")
    return HoursRule(timezone=rule["timezone"], windows=tuple(windows))


def _minutes(text: Any) -> int:
    try:
        hours, minutes = str(text).split(":")
        value = int(hours) * 60 + int(minutes)
        if not (0 <= int(minutes) < 60 and 0 <= value <= 1440):
            raise ValueError
    except ValueError:
        raise PolicyError(f"hours: {text!r} is not a time HH:MM (00:00 to 24:00)") from None
    return value


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
