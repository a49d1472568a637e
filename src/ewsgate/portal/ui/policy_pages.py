"""The customer policy page: ``GET/POST /customers/{id}/policy``.

Everyone who sees the customer reads its own settings and the effective policy (what its
chain makes of them); an Administrator changes them with the form. Hours are written one
window a line, ``mon 08:00-18:00``, in the time zone given beside them. The service decides
(:mod:`ewsgate.portal.services.policies`); the page only shows and forwards.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ewsgate.portal.services import customers as customer_service
from ewsgate.portal.services import policies as policy_service
from ewsgate.portal.services.access import Action
from ewsgate.portal.services.errors import InvalidInput, ServiceError
from ewsgate.portal.ui.web import Page, PageError, page

__all__ = ["customer_policy", "update_customer_policy"]

_CHOICES = ("approval", "reason", "mode")
_NUMBERS = ("idle_timeout_minutes", "max_sessions_per_device",
            "max_sessions_per_user_per_device", "approval_expiry_minutes")


def _form_to_policy(p: Page) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in _CHOICES:
        value = p.field(name)
        data[name] = value or None
    for name in _NUMBERS:
        value = p.field(name)
        if value:
            if not value.isdigit():
                raise InvalidInput(f"{name} must be a whole number, not {value!r}",
                                   code="invalid_policy", field=name)
            data[name] = int(value)
    panel = p.field("allow_panel")
    data["allow_panel"] = None if not panel else panel == "yes"
    zone, lines = p.field("timezone"), [x.strip() for x in p.field("hours").splitlines()]
    windows = []
    for line in filter(None, lines):
        parts = line.replace("-", " ").split()
        if len(parts) != 3:
            raise InvalidInput(f"hours: write one window a line, like 'mon 08:00-18:00', not "
                               f"{line!r}", code="invalid_policy", field="hours")
        windows.append({"day": parts[0].lower(), "start": parts[1], "end": parts[2]})
    data["hours"] = [{"timezone": zone or "UTC", "windows": windows}] if windows else []
    return data


async def _show(p: Page, customer_id: int, *, error: PageError | None = None,
                status_code: int = 200) -> Response:
    try:
        async with p.transaction() as session:
            customer = await customer_service.get_customer(session, p.actor, customer_id)
            own = (await policy_service.get_policy(session, p.actor, customer_id)).as_json()
            effective = (await policy_service.get_effective_policy(
                session, p.actor, customer_id)).as_json()
    except ServiceError as exc:
        return p.failure(exc)
    hours = own["hours"][0] if own["hours"] else None
    return p.render("customers/policy.html", "customers", {
        "title": f"{customer.name} · Remote Technician policy", "customer": customer,
        "own": own, "effective": effective, "error": error,
        "hours_zone": hours["timezone"] if hours else "",
        "hours_text": "\n".join(f"{w['day']} {w['start']}-{w['end']}"
                                for w in hours["windows"]) if hours else "",
        "can_set": p.actor.can_anywhere(Action.MANAGE_POLICY),
    }, status_code=status_code)


@page
async def customer_policy(p: Page, customer_id: int) -> Response:
    """``GET /customers/{id}/policy``."""
    return await _show(p, customer_id)


@page
async def update_customer_policy(p: Page, customer_id: int) -> Response:
    """``POST /customers/{id}/policy`` (Administrators)."""
    try:
        data = _form_to_policy(p)
        async with p.transaction() as session:
            await policy_service.set_policy(session, p.actor, customer_id, data)
    except ServiceError as exc:
        return await _show(p, customer_id, error=PageError.of(exc), status_code=exc.status)
    return p.redirect(f"/customers/{customer_id}/policy", "policy-saved")
