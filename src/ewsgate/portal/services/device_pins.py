"""Device identity pins in the portal: what is sent, what is learned, who resets, how strong.

The agent checks a device by SNMP (serial or MAC) and then by its *pins* — the SHA-256 of its
web server's certificate (HTTPS endpoints) and its MAC in the agent's neighbour table (when
on-link); see :mod:`ewsgate.agent.pins`. The portal:

* sends the pins it holds with every ``VerifyDevice`` and ``OpenSession``
  (:func:`pins_payload`, :func:`tls_port`);
* stores what the agent saw at the **first verified check** (trust on first use):
  :func:`record_check` fills an empty pin and writes a ``learned`` event; it never overwrites
  a pin (a different value is a mismatch and fails the check on the agent) and records a
  ``mismatch`` event when the agent found other values;
* lets an **Administrator** of the device reset the pins after checking the device
  (:func:`reset_pins`, recorded with who and the values before); the next verified check
  learns them again;
* rates the device's identity (:func:`identity_strength`): ``strong`` with SNMPv3 authPriv,
  ``pinned`` when a pin is held, ``pending`` when an HTTPS endpoint will give a certificate pin
  at the first verified session, and ``weak`` — SNMPv2c (or SNMP off) and plain HTTP with no
  pin: a host on the site's network that answers SNMP with the serial passes the check. The
  UI's device page and the API's device representation show the warning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import audit
from ewsgate.portal.services.access import Action, Actor
from ewsgate.portal.services.devices import device_customer_id, get_device
from ewsgate.portal.store.models import Customer, Device, DevicePinEvent
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "PIN_MISMATCH_CODES",
    "identity_strength",
    "pin_events",
    "pins_payload",
    "pins_view",
    "record_check",
    "reset_pins",
    "tls_port",
]

PIN_MISMATCH_CODES = ("cert_pin_mismatch", "mac_pin_mismatch")
_HEX = set("0123456789abcdef")

WEAK_WARNING = ("Weak identity: this device is checked with SNMPv2c (the community travels in "
                "clear) and has only plain HTTP (no certificate to pin), and no on-link MAC is "
                "pinned, so a host on the site's network that answers SNMP with the recorded "
                "serial or MAC could pass the check. Use SNMPv3 authPriv (the strong option) "
                "or an HTTPS endpoint.")


def pins_payload(device: Device) -> dict[str, str | None]:
    """The pins the portal holds, for the command payload (``null`` = not pinned yet)."""
    return {"ews_cert_sha256": device.pin_ews_cert_sha256, "mac": device.pin_mac}


def tls_port(device: Device) -> int | None:
    """The port of the device's first HTTPS endpoint (its certificate is the pin), if any."""
    for endpoint in device.ews_endpoints or []:
        if isinstance(endpoint, dict) and endpoint.get("scheme") == "https":
            return int(endpoint["port"])
    return None


def _v3_auth_priv(device: Device) -> bool:
    return (device.snmp_version == "3" and bool(device.snmp_v3_auth_key)
            and bool(device.snmp_v3_priv_key))


def identity_strength(device: Device) -> dict[str, Any]:
    """``{level, weak, factors, message}`` for the API and the device page."""
    factors = [f"SNMP {'v3 authPriv' if _v3_auth_priv(device) else device.snmp_version}"
               f" ({'serial' if device.identity_method == 'serial' else 'MAC'})"]
    if device.pin_ews_cert_sha256:
        factors.append("pinned web server certificate")
    if device.pin_mac:
        factors.append("pinned on-link MAC")
    if _v3_auth_priv(device):
        level, message = "strong", ("SNMPv3 authPriv: only a host that knows the site's v3 keys "
                                    "can answer as this device.")
    elif device.pin_ews_cert_sha256 or device.pin_mac:
        level, message = "pinned", ("Two factors: the SNMP answer and a pin learned at the first "
                                    "verified check. SNMPv3 authPriv is the strong option.")
    elif tls_port(device) is not None:
        level, message = "pending", ("The web server certificate will be pinned at the first "
                                     "verified check (trust on first use). SNMPv3 authPriv is "
                                     "the strong option.")
    else:
        level, message = "weak", WEAK_WARNING
    return {"level": level, "weak": level == "weak", "factors": factors, "message": message}


def _clean_fingerprint(value: object) -> str | None:
    text = str(value or "").strip().lower()
    return text if len(text) == 64 and set(text) <= _HEX else None


def _clean_mac(value: object) -> str | None:
    text = str(value or "").strip().lower()
    parts = text.split(":")
    if len(parts) == 6 and all(len(p) == 2 and set(p) <= _HEX for p in parts) \
            and text != "00:00:00:00:00:00":
        return text
    return None


async def _dealer_id(session: AsyncSession, device: Device) -> int:
    customer_id = await device_customer_id(session, device)
    dealer = await session.scalar(select(Customer.dealer_id).where(Customer.id == customer_id))
    assert dealer is not None
    return int(dealer)


async def record_check(session: AsyncSession, device: Device, result: dict[str, Any], *,
                       clock: Clock = utc_now) -> bool:
    """Store what a check's ``result`` (the agent's VerifyDevice result, or OpenSession's
    ``identity``) learned; record a pin mismatch. True when a pin was learned."""
    outcome, code = result.get("result"), str(result.get("code") or "")
    pins = result.get("pins") if isinstance(result.get("pins"), dict) else None
    if outcome != "verified":
        if code in PIN_MISMATCH_CODES:
            session.add(DevicePinEvent(
                device_id=device.id, dealer_id=await _dealer_id(session, device), at=clock(),
                action="mismatch", old_ews_cert_sha256=device.pin_ews_cert_sha256,
                old_mac=device.pin_mac, detail=str(result.get("detail") or "")[:2000]))
        return False
    learned = pins.get("learned") if pins is not None else None
    if not isinstance(learned, dict):
        return False
    cert = _clean_fingerprint(learned.get("ews_cert_sha256"))
    mac = _clean_mac(learned.get("mac"))
    new_cert = cert if cert and not device.pin_ews_cert_sha256 else None
    new_mac = mac if mac and not device.pin_mac else None
    if new_cert is None and new_mac is None:
        return False
    old_cert, old_mac = device.pin_ews_cert_sha256, device.pin_mac
    if new_cert:
        device.pin_ews_cert_sha256 = new_cert
    if new_mac:
        device.pin_mac = new_mac
    device.pins_learned_at = clock()
    session.add(DevicePinEvent(
        device_id=device.id, dealer_id=await _dealer_id(session, device), at=clock(),
        action="learned", old_ews_cert_sha256=old_cert, old_mac=old_mac,
        new_ews_cert_sha256=device.pin_ews_cert_sha256, new_mac=device.pin_mac,
        detail="learned at the first verified check (trust on first use)"))
    return True


async def reset_pins(session: AsyncSession, actor: Actor, device_id: int, *,
                     clock: Clock = utc_now) -> Device:
    """Forget the device's pins (Administrator of the device); recorded with the values before.
    The next verified check pins what it sees."""
    device = await get_device(session, actor, device_id, Action.MANAGE_INVENTORY)
    before = audit.snapshot(device, *_PIN_FIELDS)
    session.add(DevicePinEvent(
        device_id=device.id, dealer_id=actor.dealer_id, at=clock(), action="reset",
        user_id=actor.user_id, user_email=actor.email,
        old_ews_cert_sha256=device.pin_ews_cert_sha256, old_mac=device.pin_mac,
        detail=f"reset by administrator {actor.email}"))
    device.pin_ews_cert_sha256 = None
    device.pin_mac = None
    device.pins_learned_at = None
    await session.flush()
    await audit.record(session, "device.reset_pins", actor=actor, target_id=device.id,
                       customer_id=await device_customer_id(session, device), before=before,
                       after=audit.snapshot(device, *_PIN_FIELDS), clock=clock)
    return device


_PIN_FIELDS = ("pin_ews_cert_sha256", "pin_mac", "pins_learned_at")


async def pin_events(session: AsyncSession, actor: Actor, device_id: int,
                     limit: int = 50) -> list[DevicePinEvent]:
    """The device's pin history, newest first (anyone who may see the device)."""
    await get_device(session, actor, device_id)
    rows = await session.scalars(
        select(DevicePinEvent).where(DevicePinEvent.device_id == device_id)
        .order_by(DevicePinEvent.at.desc(), DevicePinEvent.id.desc()).limit(limit))
    return list(rows.all())


def pins_view(device: Device) -> dict[str, Any]:
    """The pins as the API shows them."""
    learned: datetime | None = device.pins_learned_at
    return {"ews_cert_sha256": device.pin_ews_cert_sha256, "mac": device.pin_mac,
            "learned_at": learned.isoformat() if learned else None}
