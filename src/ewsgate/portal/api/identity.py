"""REST: ``POST /api/v1/devices/{id}/verify-identity`` — run the installation's identity check.

The call waits for the agent's answer (up to 20 s) and returns
``{result: verified|mismatch|unknown, code, detail, seen_mac, seen_serial, checked_at}``; the
outcome is also stored on the device. An offline installation answers 503
``installation_offline``, a timeout 504 ``command_timeout``, an agent failure 502 (see
:mod:`ewsgate.portal.services.device_identity` and docs/control-channel.md).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from ewsgate.portal.api.deps import Context, CurrentActor, Id
from ewsgate.portal.control.runtime import hub_of
from ewsgate.portal.services.device_identity import verify_device_identity

__all__ = ["IdentityResultOut", "router"]

router = APIRouter()


class IdentityResultOut(BaseModel):
    result: Literal["verified", "mismatch", "unknown"]
    code: str | None = None
    detail: str
    seen_mac: str | None = None
    seen_serial: str | None = None
    checked_at: str


@router.post("/devices/{device_id}/verify-identity", tags=["devices"])
async def verify_identity(device_id: Id, actor: CurrentActor, ctx: Context) -> IdentityResultOut:
    """Check that the device at its recorded IP is the device on record (MAC or serial)."""
    answer = await verify_device_identity(ctx.database, actor, device_id, hub_of(ctx),
                                          clock=ctx.clock)
    return IdentityResultOut(**answer)
