"""REST: customers, installations (with enrolment tokens) and devices (with the Remote
Technician switch). Each handler is one service call in one transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from ewsgate.portal.api.deps import Context, CurrentActor, Id, QueryId
from ewsgate.portal.api.schemas import (
    CustomerCreate,
    CustomerOut,
    CustomerUpdate,
    DeviceCreate,
    DeviceOut,
    DeviceUpdate,
    EnrolmentRecordOut,
    EnrolmentTokenCreate,
    EnrolmentTokenOut,
    InstallationCreate,
    InstallationOut,
    InstallationUpdate,
    RemoteTechnicianSetting,
)
from ewsgate.portal.services import customers, devices, installations
from ewsgate.portal.services.validation import clean_int

__all__ = ["router"]

router = APIRouter()


# --- customers ---

@router.get("/customers", tags=["customers"])
async def list_customers(actor: CurrentActor, ctx: Context, search: str | None = None,
                         parent_id: QueryId = None) -> list[CustomerOut]:
    """Customers you can see (any role), by name."""
    async with ctx.database.transaction() as s:
        rows = await customers.list_customers(s, actor, search=search, parent_id=parent_id)
        return [CustomerOut.model_validate(r) for r in rows]


@router.post("/customers", status_code=201, tags=["customers"])
async def create_customer(body: CustomerCreate, actor: CurrentActor,
                          ctx: Context) -> CustomerOut:
    """Create a customer (Administrator of the parent; dealer-wide for a top-level one)."""
    async with ctx.database.transaction() as s:
        row = await customers.create_customer(s, actor, body.model_dump(exclude_unset=True),
                                              clock=ctx.clock)
        return CustomerOut.model_validate(row)


@router.get("/customers/{customer_id}", tags=["customers"])
async def get_customer(customer_id: Id, actor: CurrentActor, ctx: Context) -> CustomerOut:
    async with ctx.database.transaction() as s:
        return CustomerOut.model_validate(await customers.get_customer(s, actor, customer_id))


@router.patch("/customers/{customer_id}", tags=["customers"])
async def update_customer(customer_id: Id, body: CustomerUpdate, actor: CurrentActor,
                          ctx: Context) -> CustomerOut:
    """Rename or move (``parent_id``; a cycle is refused with ``customer_cycle``)."""
    async with ctx.database.transaction() as s:
        row = await customers.update_customer(s, actor, customer_id,
                                              body.model_dump(exclude_unset=True))
        return CustomerOut.model_validate(row)


@router.delete("/customers/{customer_id}", status_code=204, tags=["customers"])
async def delete_customer(customer_id: Id, actor: CurrentActor, ctx: Context) -> Response:
    """Delete an empty customer (409 ``customer_not_empty`` otherwise)."""
    async with ctx.database.transaction() as s:
        await customers.delete_customer(s, actor, customer_id)
    return Response(status_code=204)


# --- installations ---

@router.get("/installations", tags=["installations"])
async def list_installations(actor: CurrentActor, ctx: Context, customer_id: QueryId = None,
                             online: bool | None = None,
                             search: str | None = None) -> list[InstallationOut]:
    async with ctx.database.transaction() as s:
        rows = await installations.list_installations(s, actor, customer_id=customer_id,
                                                      online=online, search=search)
        return [InstallationOut.model_validate(r) for r in rows]


@router.post("/installations", status_code=201, tags=["installations"])
async def create_installation(body: InstallationCreate, actor: CurrentActor,
                              ctx: Context) -> InstallationOut:
    async with ctx.database.transaction() as s:
        row = await installations.create_installation(
            s, actor, body.model_dump(exclude_unset=True), clock=ctx.clock)
        return InstallationOut.model_validate(row)


@router.get("/installations/{installation_id}", tags=["installations"])
async def get_installation(installation_id: Id, actor: CurrentActor,
                           ctx: Context) -> InstallationOut:
    async with ctx.database.transaction() as s:
        row = await installations.get_installation(s, actor, installation_id)
        return InstallationOut.model_validate(row)


@router.patch("/installations/{installation_id}", tags=["installations"])
async def update_installation(installation_id: Id, body: InstallationUpdate,
                              actor: CurrentActor, ctx: Context) -> InstallationOut:
    async with ctx.database.transaction() as s:
        row = await installations.update_installation(s, actor, installation_id,
                                                      body.model_dump(exclude_unset=True),
                                                      clock=ctx.clock)
        out = InstallationOut.model_validate(row)
    if not out.enabled:
        from ewsgate.portal.control.runtime import cut_installation

        cut_installation(ctx, installation_id, "the installation was disabled")
    return out


@router.delete("/installations/{installation_id}", status_code=204, tags=["installations"])
async def delete_installation(installation_id: Id, actor: CurrentActor,
                              ctx: Context) -> Response:
    """Delete an installation and its devices; its certificate stops working at once."""
    async with ctx.database.transaction() as s:
        await installations.delete_installation(s, actor, installation_id, clock=ctx.clock)
    from ewsgate.portal.control.runtime import cut_installation

    cut_installation(ctx, installation_id, "the installation was deleted")
    return Response(status_code=204)


@router.post("/installations/{installation_id}/enrolment-tokens", status_code=201,
             tags=["installations"])
async def create_enrolment_token(
        installation_id: Id, actor: CurrentActor, ctx: Context,
        body: Annotated[EnrolmentTokenCreate | None, Body()] = None) -> EnrolmentTokenOut:
    """A one-time enrolment token for ``ewsgate agent enroll --token`` (shown once)."""
    hours = clean_int("lifetime_hours", body.lifetime_hours if body else 24,
                      low=1, high=720)
    async with ctx.database.transaction() as s:
        issued = await installations.create_enrolment_token(
            s, actor, installation_id, purpose=body.purpose if body else None,
            lifetime=timedelta(hours=hours), clock=ctx.clock)
        from ewsgate.portal.control.runtime import display_enrolment_token

        return EnrolmentTokenOut(token=display_enrolment_token(ctx, issued.token),
                                 installation_id=installation_id,
                                 expires_at=issued.record.expires_at,
                                 purpose=issued.record.purpose)


@router.get("/installations/{installation_id}/enrolment-tokens", tags=["installations"])
async def list_enrolment_tokens(installation_id: Id, actor: CurrentActor,
                                ctx: Context) -> list[EnrolmentRecordOut]:
    """The installation's enrolment history, newest first: who asked for each token and why,
    when it was used or superseded, which certificate it issued and replaced."""
    async with ctx.database.transaction() as s:
        records = await installations.enrolment_history(s, actor, installation_id)
        return [EnrolmentRecordOut.model_validate(r, from_attributes=True) for r in records]


# --- devices ---

@router.get("/devices", tags=["devices"])
async def list_devices(actor: CurrentActor, ctx: Context,
                       search: Annotated[str | None, Query(
                           description="substring of name, model, IP, host, serial or MAC")
                       ] = None,
                       customer_id: Annotated[int | None, Query(
                           ge=1, le=2**31 - 1,
                           description="this customer and the customers nested in it")] = None,
                       installation_id: QueryId = None, make: str | None = None,
                       remote_technician_enabled: bool | None = None,
                       online: bool | None = None,
                       limit: Annotated[int, Query(ge=1, le=5000)] = 500,
                       offset: Annotated[int, Query(ge=0)] = 0) -> list[DeviceOut]:
    filters = devices.DeviceFilter(search=search, customer_id=customer_id,
                                   installation_id=installation_id, make=make,
                                   remote_technician_enabled=remote_technician_enabled,
                                   online=online)
    async with ctx.database.transaction() as s:
        rows = await devices.list_devices(s, actor, filters, limit=limit, offset=offset)
        return [DeviceOut.of(r) for r in rows]


@router.post("/devices", status_code=201, tags=["devices"])
async def create_device(body: DeviceCreate, actor: CurrentActor, ctx: Context) -> DeviceOut:
    """Add a device (Administrator). Remote Technician starts disabled."""
    async with ctx.database.transaction() as s:
        row = await devices.create_device(s, actor, body.model_dump(exclude_unset=True),
                                          clock=ctx.clock)
        return DeviceOut.of(row)


@router.get("/devices/{device_id}", tags=["devices"])
async def get_device(device_id: Id, actor: CurrentActor, ctx: Context) -> DeviceOut:
    async with ctx.database.transaction() as s:
        return DeviceOut.of(await devices.get_device(s, actor, device_id))


@router.patch("/devices/{device_id}", tags=["devices"])
async def update_device(device_id: Id, body: DeviceUpdate, actor: CurrentActor,
                        ctx: Context) -> DeviceOut:
    async with ctx.database.transaction() as s:
        row = await devices.update_device(s, actor, device_id,
                                          body.model_dump(exclude_unset=True), clock=ctx.clock)
        return DeviceOut.of(row)


@router.delete("/devices/{device_id}", status_code=204, tags=["devices"])
async def delete_device(device_id: Id, actor: CurrentActor, ctx: Context) -> Response:
    async with ctx.database.transaction() as s:
        await devices.delete_device(s, actor, device_id, clock=ctx.clock)
    return Response(status_code=204)


@router.put("/devices/{device_id}/remote-technician", tags=["devices"])
async def set_remote_technician(device_id: Id, body: RemoteTechnicianSetting,
                                actor: CurrentActor, ctx: Context) -> DeviceOut:
    """Enable or disable Remote Technician (Remote Technician Configurer only); disabling
    ends the device's live sessions."""
    async with ctx.database.transaction() as s:
        row = await devices.set_remote_technician(s, actor, device_id, body.enabled,
                                                  clock=ctx.clock)
        return DeviceOut.of(row)
