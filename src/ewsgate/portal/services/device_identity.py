"""*Verify identity*: ask a device's installation to check that the device is still at its IP.

:func:`verify_device_identity` is what ``POST /api/v1/devices/{id}/verify-identity`` and the
device page's button call. It reads the device (access checked), sends ``VerifyDevice`` down
the installation's control stream (:meth:`ControlHub.send_command`), stores what was seen on the
device record (``last_identity_*``, ``last_seen_mac``/``serial``, ``last_verified_at``) and
returns ``{result: verified|mismatch|unknown, code, detail, seen_mac, seen_serial, pins,
checked_at}`` (``pins``: the second factor, see :mod:`.device_pins`).

No database transaction is held while the agent works (up to ``timeout`` seconds). An offline
installation, a timeout or an agent failure is *not* a verification: it raises the hub's
:class:`CommandError` (``installation_offline`` 503, ``command_timeout`` 504, ...), and the
device record keeps ``unknown`` with the reason.

Who may run it: any role that acts on devices in the device's scope — Administrator,
Configurer or User (a Viewer only looks).
"""

from __future__ import annotations

from typing import Any

from ewsgate.portal.control.hub import CommandError, CommandSender
from ewsgate.portal.services import audit
from ewsgate.portal.services.access import Action, Actor
from ewsgate.portal.services.device_pins import pins_payload, record_check, tls_port
from ewsgate.portal.services.devices import device_customer_id, get_device
from ewsgate.portal.services.errors import PermissionDenied
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Device, Installation
from ewsgate.portal.store.types import Clock, utc_now

__all__ = ["VERIFY_ACTIONS", "verify_device_identity", "verify_payload"]

VERIFY_ACTIONS = (Action.MANAGE_INVENTORY, Action.CONFIGURE_REMOTE_TECHNICIAN,
                  Action.OPEN_SESSION)


def verify_payload(device: Device, *, timeout: float = 4.0,
                   site_subnets: list[str] | None = None) -> dict[str, Any]:
    """The ``VerifyDevice`` command payload for a device record (see ``agent/commands.py``);
    ``site_subnets`` is its installation's list (the agent reaches nothing outside it)."""
    endpoints = device.ews_endpoints or []
    port = endpoints[0].get("port") if endpoints and isinstance(endpoints[0], dict) else None
    snmp: dict[str, Any] = {"version": device.snmp_version or "2c",
                            "port": device.snmp_port or 161}
    if device.snmp_community:
        snmp["community"] = device.snmp_community
    if device.snmp_version == "3":
        snmp.update({"v3_user": device.snmp_v3_user or "",
                     "v3_auth_key": device.snmp_v3_auth_key or "",
                     "v3_priv_key": device.snmp_v3_priv_key or "",
                     "v3_auth_protocol": (device.snmp_v3_auth_protocol or "sha").upper(),
                     "v3_priv_protocol": (device.snmp_v3_priv_protocol or "aes").upper()})
    return {"device_id": device.id, "ip": device.ip, "method": device.identity_method,
            "make": device.make, "expected_mac": device.mac, "expected_serial": device.serial,
            "ews_port": port, "timeout": timeout, "snmp": snmp,
            # the second factor: pins held (null until learned) and where the certificate is
            "pins": pins_payload(device), "tls_port": tls_port(device),
            "site_subnets": list(site_subnets or ())}


async def _device_for_verify(database: Database, actor: Actor, device_id: int
                             ) -> tuple[Device, list[str] | None]:
    """The device (access checked) and its installation's site subnets."""
    async with database.transaction() as session:
        denied: PermissionDenied | None = None
        for action in VERIFY_ACTIONS:
            try:
                device = await get_device(session, actor, device_id, action)
            except PermissionDenied as exc:
                denied = exc
                continue
            installation = await session.get(Installation, device.installation_id)
            return device, installation.site_subnets if installation is not None else None
        assert denied is not None
        raise PermissionDenied(f"checking the identity of device {device_id} needs the "
                               "Administrator, Configurer or User role for it",
                               code="forbidden")


async def verify_device_identity(database: Database, actor: Actor, device_id: int,
                                 hub: CommandSender, *, clock: Clock = utc_now,
                                 timeout: float = 20.0,  # noqa: ASYNC109 (the command's)
                                 ) -> dict[str, Any]:
    """Run the identity check on the device's installation; see the module docstring."""
    device, site_subnets = await _device_for_verify(database, actor, device_id)
    payload = verify_payload(device, site_subnets=site_subnets)
    try:
        result = await hub.send_command(device.installation_id, "VerifyDevice", payload,
                                        timeout=timeout)
    except CommandError as exc:
        await _record(database, device_id, {"result": "unknown", "detail": exc.message},
                      clock, verified=False, actor=actor)
        raise
    outcome = str(result.get("result", "unknown"))
    if outcome not in ("verified", "mismatch", "unknown"):
        outcome = "unknown"
    answer = {"result": outcome, "code": result.get("code"),
              "detail": str(result.get("detail") or ""),
              "seen_mac": result.get("seen_mac"), "seen_serial": result.get("seen_serial"),
              "pins": result.get("pins") if isinstance(result.get("pins"), dict) else None,
              "checked_at": clock().isoformat(timespec="seconds")}
    await _record(database, device_id, answer, clock, verified=outcome == "verified",
                  actor=actor, pins=result)
    return answer


async def _record(database: Database, device_id: int, answer: dict[str, Any], clock: Clock,
                  *, verified: bool, actor: Actor,
                  pins: dict[str, Any] | None = None) -> None:
    async with database.transaction() as session:
        device = await session.get(Device, device_id)
        if device is None:  # deleted meanwhile
            return
        before = audit.snapshot(device, *_RESULT_FIELDS)
        device.last_identity_result = answer["result"]
        device.last_identity_detail = answer["detail"][:4000]
        if answer.get("seen_mac"):
            device.last_seen_mac = str(answer["seen_mac"])[:17]
        if answer.get("seen_serial"):
            device.last_seen_serial = str(answer["seen_serial"])[:128]
        if verified:
            device.last_verified_at = clock()
        if pins is not None:  # the agent's result: learn pins at the first verified check
            await record_check(session, device, pins, clock=clock)
        await audit.record(session, "device.verify_identity", actor=actor, target_id=device.id,
                           customer_id=await device_customer_id(session, device),
                           before=before, after=audit.snapshot(device, *_RESULT_FIELDS),
                           detail=f"{answer['result']}: {answer['detail']}", clock=clock)


_RESULT_FIELDS = ("last_identity_result", "last_identity_detail", "last_seen_mac",
                  "last_seen_serial", "last_verified_at", "pin_ews_cert_sha256", "pin_mac",
                  "pins_learned_at")
