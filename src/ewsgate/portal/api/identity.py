"""REST: ``POST /api/v1/devices/{id}/verify-identity`` — run the installation's identity check;
``DELETE /api/v1/devices/{id}/identity-pins`` — an Administrator resets the device's pins
(recorded; the next verified check learns them again); ``GET
/api/v1/devices/{id}/identity-pins/events`` — the pin history (learned, reset, mismatch).

The call waits for the agent's answer (up to 20 s) and returns
``{result: verified|mismatch|unknown, code, detail, seen_mac, seen_serial, checked_at}``; the
outcome is also stored on the device. An offline installation answers 503
``installation_offline``, a timeout 504 ``command_timeout``, an agent failure 502 (see
:mod:`ewsgate.portal.services.device_identity` and docs/control-channel.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from ewsgate.portal.api.deps import Context, CurrentActor, Id
from ewsgate.portal.api.schemas import DeviceOut
from ewsgate.portal.control.runtime import hub_of
from ewsgate.portal.services import device_pins
from ewsgate.portal.services.device_identity import verify_device_identity

__all__ = ["IdentityResultOut", "PinEventOut", "router"]

router = APIRouter()


class IdentityResultOut(BaseModel):
    result: Literal["verified", "mismatch", "unknown"]
    code: str | None = None
    detail: str
    seen_mac: str | None = None
    seen_serial: str | None = None
    #: the pins' part of the check: ``{result, code, detail, learned}`` (null when the SNMP/ARP
    #: identity itself did not verify)
    pins: dict[str, Any] | None = None
    checked_at: str


@router.post("/devices/{device_id}/verify-identity", tags=["devices"])
async def verify_identity(device_id: Id, actor: CurrentActor, ctx: Context) -> IdentityResultOut:
    """Check that the device at its recorded IP is the device on record (MAC or serial)."""
    answer = await verify_device_identity(ctx.database, actor, device_id, hub_of(ctx),
                                          clock=ctx.clock)
    return IdentityResultOut(**answer)


class PinEventOut(BaseModel):
    at: datetime
    action: Literal["learned", "reset", "mismatch"]
    user_email: str | None = None
    old_ews_cert_sha256: str | None = None
    old_mac: str | None = None
    new_ews_cert_sha256: str | None = None
    new_mac: str | None = None
    detail: str | None = None


@router.delete("/devices/{device_id}/identity-pins", tags=["devices"])
async def reset_identity_pins(device_id: Id, actor: CurrentActor, ctx: Context) -> DeviceOut:
    """Forget the device's pins (Administrator), after checking the device: a renewed
    certificate or a new network card. Recorded; the next verified check pins again."""
    async with ctx.database.transaction() as s:
        return DeviceOut.of(await device_pins.reset_pins(s, actor, device_id, clock=ctx.clock))


@router.get("/devices/{device_id}/identity-pins/events", tags=["devices"])
async def identity_pin_events(device_id: Id, actor: CurrentActor,
                              ctx: Context) -> list[PinEventOut]:
    """The device's pin history, newest first."""
    async with ctx.database.transaction() as s:
        rows = await device_pins.pin_events(s, actor, device_id)
        return [PinEventOut(at=r.at, action=r.action,  # type: ignore[arg-type]
                            user_email=r.user_email, old_ews_cert_sha256=r.old_ews_cert_sha256,
                            old_mac=r.old_mac, new_ews_cert_sha256=r.new_ews_cert_sha256,
                            new_mac=r.new_mac, detail=r.detail) for r in rows]
