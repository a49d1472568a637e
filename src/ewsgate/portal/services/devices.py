"""Devices: the inventory of printers behind installations, the Remote Technician switch,
and the check a session start must pass.

Access follows the device's installation's customer (see :mod:`.access`):

* any role in scope sees it; Administrators create, edit and delete it;
* only a Configurer flips ``remote_technician_enabled`` (:func:`set_remote_technician`), which
  is why create/update refuse that field; turning it off ends the device's live sessions;
* only a User opens a session, and only on an enabled device of an enabled installation
  (:func:`authorize_open_session`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import audit
from ewsgate.portal.services.access import Action, Actor, load_tree, require, scope_for
from ewsgate.portal.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ewsgate.portal.services.validation import (
    check_known,
    clean_bool,
    clean_choice,
    clean_endpoints,
    clean_hostname,
    clean_int,
    clean_ip,
    clean_mac,
    clean_optional_text,
    clean_text,
)
from ewsgate.portal.store.models import (
    DEVICE_MAKES,
    IDENTITY_METHODS,
    SNMP_VERSIONS,
    Device,
    Installation,
    RemoteSession,
)
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "DEVICE_FIELDS",
    "DeviceFilter",
    "authorize_open_session",
    "can_open_session",
    "create_device",
    "delete_device",
    "device_customer_id",
    "get_device",
    "list_devices",
    "set_remote_technician",
    "update_device",
]

#: Fields create/update accept (``remote_technician_enabled`` has its own call).
DEVICE_FIELDS = frozenset({
    "installation_id", "name", "make", "model", "ip", "hostname", "mac", "serial",
    "ews_endpoints", "identity_method", "snmp_version", "snmp_port", "snmp_community",
    "snmp_v3_user", "snmp_v3_auth_protocol", "snmp_v3_auth_key", "snmp_v3_priv_protocol",
    "snmp_v3_priv_key",
})
_AUTH_PROTOCOLS = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
_PRIV_PROTOCOLS = ("des", "3des", "aes", "aes192", "aes256")
_LIVE = ("verifying", "connecting", "ready")


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Filters for :func:`list_devices`; all optional, combined with AND."""

    search: str | None = None  # substring of name, model, IP, host name, serial or MAC
    customer_id: int | None = None  # that customer and its subtree
    installation_id: int | None = None
    make: str | None = None
    remote_technician_enabled: bool | None = None
    online: bool | None = None  # the installation's state


async def device_customer_id(session: AsyncSession, device: Device) -> int | None:
    """The customer a device belongs to (through its installation)."""
    return await session.scalar(
        select(Installation.customer_id).where(Installation.id == device.installation_id))


async def list_devices(session: AsyncSession, actor: Actor,
                       filters: DeviceFilter = DeviceFilter(), *, limit: int = 500,
                       offset: int = 0) -> list[Device]:
    """Devices the actor can see, by name, filtered by ``filters``."""
    tree = await load_tree(session, actor.dealer_id)
    visible = scope_for(actor, Action.VIEW, tree)
    if visible.empty:
        return []
    customers = visible.customer_ids
    if filters.customer_id is not None:
        customers = customers & frozenset(tree.subtree(filters.customer_id))
    query: Select[Device] = select(Device).join(
        Installation, Installation.id == Device.installation_id).where(
        Installation.customer_id.in_(customers))
    if filters.installation_id is not None:
        query = query.where(Device.installation_id == filters.installation_id)
    if filters.make:
        query = query.where(Device.make == filters.make.strip().lower())
    if filters.remote_technician_enabled is not None:
        query = query.where(
            Device.remote_technician_enabled.is_(filters.remote_technician_enabled))
    if filters.online is not None:
        query = query.where(Installation.online.is_(filters.online))
    if filters.search and filters.search.strip():
        needle = filters.search.strip().lower()
        query = query.where(or_(*(func.lower(func.coalesce(column, "")).contains(needle)
                                  for column in (Device.name, Device.model, Device.ip,
                                                 Device.hostname, Device.serial, Device.mac))))
    query = query.order_by(Device.name, Device.id).limit(max(1, min(limit, 5000))).offset(
        max(0, offset))
    return list((await session.scalars(query)).all())


async def get_device(session: AsyncSession, actor: Actor, device_id: int,
                     action: Action = Action.VIEW) -> Device:
    """The device if the actor may do ``action`` on it: invisible → :class:`NotFound`,
    visible but not allowed → :class:`PermissionDenied`."""
    device = await session.get(Device, device_id)
    tree = await load_tree(session, actor.dealer_id)
    customer_id = await device_customer_id(session, device) if device is not None else None
    if device is None or customer_id not in tree.parents:
        raise NotFound.of("device", device_id)
    require(actor, action, tree, customer_id, kind="device", ident=device_id)
    return device


async def create_device(session: AsyncSession, actor: Actor, values: Mapping[str, Any], *,
                        clock: Clock = utc_now) -> Device:
    """Create a device (Administrator of the installation's customer).

    Required: ``installation_id``, ``name``, ``ip``; ``ews_endpoints`` defaults to
    ``[{"scheme": "http", "port": 80}]``. Remote Technician starts disabled. Every field is
    validated (:class:`InvalidInput` names it); unknown fields are refused.
    """
    check_known(values, DEVICE_FIELDS)
    installation_id = clean_int("installation_id", values.get("installation_id"), low=1,
                                high=2**31 - 1)
    installation = await _installation_for_admin(session, actor, installation_id)
    now = clock()
    device = Device(installation_id=installation_id, remote_technician_enabled=False,
                    created_at=now, updated_at=now, make="other", model="",
                    ews_endpoints=[{"scheme": "http", "port": 80}], identity_method="mac",
                    snmp_version="2c", snmp_port=161, snmp_community="public")
    if "name" not in values:
        values = {**values, "name": None}
    if "ip" not in values:
        values = {**values, "ip": None}
    _apply(device, {k: v for k, v in values.items() if k != "installation_id"})
    _check_identity(device)
    session.add(device)
    await session.flush()
    await audit.record(session, "device.create", actor=actor, target_id=device.id,
                       customer_id=installation.customer_id, after=audit.snapshot(device),
                       clock=clock)
    return device


async def update_device(session: AsyncSession, actor: Actor, device_id: int,
                        changes: Mapping[str, Any], *, clock: Clock = utc_now) -> Device:
    """Change a device's fields (Administrator). Moving it (``installation_id``) needs an
    Administrator of the target installation too."""
    check_known(changes, DEVICE_FIELDS)
    device = await get_device(session, actor, device_id, Action.MANAGE_INVENTORY)
    before = audit.snapshot(device)
    if "installation_id" in changes:
        target = clean_int("installation_id", changes["installation_id"], low=1, high=2**31 - 1)
        await _installation_for_admin(session, actor, target)
        device.installation_id = target
    _apply(device, {k: v for k, v in changes.items() if k != "installation_id"})
    _check_identity(device)
    device.updated_at = clock()
    await session.flush()
    await audit.record(session, "device.update", actor=actor, target_id=device.id,
                       customer_id=await device_customer_id(session, device), before=before,
                       after=audit.snapshot(device), clock=clock)
    return device


async def delete_device(session: AsyncSession, actor: Actor, device_id: int, *,
                        clock: Clock = utc_now) -> None:
    """Delete a device (Administrator). Its jobs and their logs stay (device_id set NULL);
    its live sessions are marked ended first."""
    device = await get_device(session, actor, device_id, Action.MANAGE_INVENTORY)
    await _end_live_sessions(session, device.id, "the device was deleted", clock())
    await audit.record(session, "device.delete", actor=actor, target_id=device.id,
                       customer_id=await device_customer_id(session, device),
                       before=audit.snapshot(device), clock=clock)
    await session.delete(device)
    await session.flush()


async def set_remote_technician(session: AsyncSession, actor: Actor, device_id: int,
                                enabled: Any, *, clock: Clock = utc_now) -> Device:
    """Enable or disable Remote Technician on a device (Configurer of it only).

    Disabling marks the device's live remote sessions ``ended`` with a reason; the session
    machinery notices and tears them down.
    """
    value = clean_bool("enabled", enabled)
    device = await get_device(session, actor, device_id, Action.CONFIGURE_REMOTE_TECHNICIAN)
    before = device.remote_technician_enabled
    if device.remote_technician_enabled != value:
        device.remote_technician_enabled = value
        device.updated_at = clock()
        if not value:
            await _end_live_sessions(session, device.id,
                                     "Remote Technician was disabled on the device", clock())
    await session.flush()
    await audit.record(session, "device.remote_technician", actor=actor, target_id=device.id,
                       customer_id=await device_customer_id(session, device),
                       before={"remote_technician_enabled": before},
                       after={"remote_technician_enabled": value},
                       detail=None if before == value else (
                           "enabled" if value else "disabled; its live sessions were ended"),
                       clock=clock)
    return device


async def authorize_open_session(session: AsyncSession, actor: Actor,
                                 device_id: int) -> Device:
    """Check that ``actor`` may open a Remote Technician session on the device; return it.

    Raises :class:`NotFound` (invisible), :class:`PermissionDenied` (no User role over it) or
    :class:`Conflict` with code ``remote_technician_disabled`` / ``installation_disabled``.
    """
    device = await get_device(session, actor, device_id, Action.OPEN_SESSION)
    if not device.remote_technician_enabled:
        raise Conflict(f"Remote Technician is disabled on device {device.id}; a Remote "
                       "Technician Configurer can enable it", code="remote_technician_disabled")
    installation = await session.get(Installation, device.installation_id)
    if installation is None or not installation.enabled:
        raise Conflict(f"the installation of device {device.id} is disabled; an administrator "
                       "can enable it", code="installation_disabled")
    return device


async def can_open_session(session: AsyncSession, actor: Actor, device_id: int) -> bool:
    """True when :func:`authorize_open_session` would succeed (for showing the button)."""
    try:
        await authorize_open_session(session, actor, device_id)
    except (NotFound, Conflict, PermissionDenied):
        return False
    return True


async def _installation_for_admin(session: AsyncSession, actor: Actor,
                                  installation_id: int) -> Installation:
    installation = await session.get(Installation, installation_id)
    tree = await load_tree(session, actor.dealer_id)
    if installation is None or installation.customer_id not in tree.parents or not scope_for(
            actor, Action.VIEW, tree).covers(installation.customer_id):
        raise NotFound(f"installation {installation_id} does not exist or is not visible to you",
                       field="installation_id")
    require(actor, Action.MANAGE_INVENTORY, tree, installation.customer_id,
            kind="installation", ident=installation_id)
    return installation


async def _end_live_sessions(session: AsyncSession, device_id: int, reason: str,
                             now: datetime) -> None:
    await audit.record_sessions_ended(session, RemoteSession.device_id == device_id, reason,
                                      clock=lambda: now)
    await session.execute(
        update(RemoteSession).where(RemoteSession.device_id == device_id,
                                    RemoteSession.status.in_(_LIVE))
        .values(status="ended", reason=reason, ended_at=now))


def _apply(device: Device, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if key == "name":
            device.name = clean_text("name", value)
        elif key == "make":
            device.make = clean_choice("make", value if value else "other", DEVICE_MAKES)
        elif key == "model":
            device.model = clean_optional_text("model", value) or ""
        elif key == "ip":
            device.ip = clean_ip("ip", value)
        elif key == "hostname":
            device.hostname = clean_hostname("hostname", value)
        elif key == "mac":
            device.mac = clean_mac("mac", value)
        elif key == "serial":
            device.serial = clean_optional_text("serial", value, max_length=128)
        elif key == "ews_endpoints":
            device.ews_endpoints = clean_endpoints("ews_endpoints", value)
        elif key == "identity_method":
            device.identity_method = clean_choice("identity_method", value, IDENTITY_METHODS)
        elif key == "snmp_version":
            device.snmp_version = clean_choice("snmp_version", value, SNMP_VERSIONS)
        elif key == "snmp_port":
            device.snmp_port = clean_int("snmp_port", value, low=1, high=65535)
        elif key in ("snmp_community", "snmp_v3_user", "snmp_v3_auth_key", "snmp_v3_priv_key"):
            setattr(device, key, clean_optional_text(key, value, max_length=128))
        elif key == "snmp_v3_auth_protocol":
            device.snmp_v3_auth_protocol = (clean_choice(key, value, _AUTH_PROTOCOLS)
                                            if value else None)
        elif key == "snmp_v3_priv_protocol":
            device.snmp_v3_priv_protocol = (clean_choice(key, value, _PRIV_PROTOCOLS)
                                            if value else None)


def _check_identity(device: Device) -> None:
    """The identity method needs the matching recorded value; SNMPv3 needs a user."""
    if device.identity_method == "mac" and not device.mac:
        raise InvalidInput("identity_method is mac but the device has no MAC address; give mac "
                           "or choose identity_method serial", field="mac")
    if device.identity_method == "serial" and not device.serial:
        raise InvalidInput("identity_method is serial but the device has no serial number; "
                           "give serial or choose identity_method mac", field="serial")
    if device.identity_method == "serial" and device.snmp_version == "off":
        raise InvalidInput("a serial number can only be read over SNMP; turn SNMP on or use "
                           "identity_method mac", field="snmp_version")
    if device.snmp_version == "3" and not device.snmp_v3_user:
        raise InvalidInput("SNMPv3 needs snmp_v3_user", field="snmp_v3_user")
