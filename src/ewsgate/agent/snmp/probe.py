"""Reading a device's identity over SNMP: its MAC and serial-number candidates.

Theory of operation, in at most three round trips:

1. one GET: sysDescr, sysObjectID, the IP → ifIndex mapping for the device IP
   (``ipAdEntIfIndex.<ip>``, ``ipAddressIfIndex.1.4.<ip>`` / ``.2.16.<ip6>``), Printer-MIB
   ``prtGeneralSerialNumber.1`` and the vendor serial OIDs for the make (all vendors' when the
   make is unknown);
2. one GET: ``ifPhysAddress.<ifIndex>`` of the interface that holds the IP — plus, when the
   sysObjectID names a different vendor than the make and no serial came back, that vendor's
   serial OIDs;
3. only when the mapping is missing or names an interface without a MAC: a walk of
   ``ifPhysAddress`` collecting every non-zero MAC ("any interface" fallback).

A missing OID is ``None`` (pysnmp reports noSuchInstance/noSuchObject per variable).
Serial candidates keep their source OID so a mismatch can say where the value came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from ewsgate.agent.snmp.client import SnmpClient, SnmpSettings, SnmpValue
from ewsgate.agent.snmp.oids import (
    IF_PHYS_ADDRESS,
    SYS_DESCR,
    SYS_OBJECT_ID,
    Oid,
    if_index_oids,
    serial_oids,
    vendor_from_make,
    vendor_from_sys_object_id,
)
from ewsgate.agent.snmp.values import decode_serial, mac_from_octets

__all__ = ["SnmpReading", "read_snmp_identity"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SnmpReading:
    """What the device told us over SNMP."""

    #: the MAC of the interface that holds the device IP (``None`` if not mapped or empty)
    mac: str | None
    #: the ifIndex that ``mac`` came from
    if_index: int | None
    #: every non-zero interface MAC seen by the fallback walk (empty unless it ran)
    interface_macs: tuple[tuple[int, str], ...]
    #: decoded serials, in preference order, each with the OID it came from
    serials: tuple[tuple[Oid, str], ...]
    vendor: str | None
    sys_descr: str | None


def _int(value: SnmpValue) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _bytes(value: SnmpValue) -> bytes | None:
    return value if isinstance(value, bytes) else None


async def read_snmp_identity(
    client: SnmpClient,
    ip: str,
    settings: SnmpSettings,
    *,
    make: str | None,
    budget: float,
) -> SnmpReading:
    """Read MAC and serial candidates from ``ip``; raises the client's errors on failure.

    Each request gets the same ``budget`` (so pysnmp reuses one target entry per device);
    the caller bounds the whole reading.
    """

    make_vendor = vendor_from_make(make)
    mapping_oids = if_index_oids(ip)
    first_serials = serial_oids(make_vendor)
    first = await client.get(ip, settings, [SYS_DESCR, SYS_OBJECT_ID, *mapping_oids,
                                            *first_serials], budget=budget)
    object_id = first.get(SYS_OBJECT_ID)
    id_vendor = vendor_from_sys_object_id(object_id if isinstance(object_id, tuple) else None)
    vendor = make_vendor or id_vendor
    descr = _bytes(first.get(SYS_DESCR))
    sys_descr = descr.decode("latin-1").strip() if descr else None

    serial_values: dict[Oid, SnmpValue] = {name: first.get(name) for name in first_serials}
    if_index = next((index for name in mapping_oids
                     if (index := _int(first.get(name))) is not None), None)

    second_oids: list[Oid] = []
    if if_index is not None:
        second_oids.append((*IF_PHYS_ADDRESS, if_index))
    extra_serials: tuple[Oid, ...] = ()
    if (id_vendor and id_vendor != make_vendor
            and not any(decode_serial(_bytes(v)) for v in serial_values.values())):
        extra_serials = tuple(name for name in serial_oids(id_vendor) if name not in serial_values)
        second_oids.extend(extra_serials)
    second = (await client.get(ip, settings, second_oids, budget=budget)
              if second_oids else {})
    serial_values.update({name: second.get(name) for name in extra_serials})

    mac = None
    if if_index is not None:
        mac = mac_from_octets(_bytes(second.get((*IF_PHYS_ADDRESS, if_index))))
    interface_macs: list[tuple[int, str]] = []
    if mac is None:
        for name, value in await client.walk(ip, settings, IF_PHYS_ADDRESS, budget=budget):
            found = mac_from_octets(_bytes(value))
            if found and len(name) == len(IF_PHYS_ADDRESS) + 1:
                interface_macs.append((name[-1], found))

    serials: list[tuple[Oid, str]] = []
    for name, value in serial_values.items():
        text = decode_serial(_bytes(value))
        if text:
            serials.append((name, text))
    return SnmpReading(mac=mac, if_index=if_index if mac else None,
                       interface_macs=tuple(interface_macs), serials=tuple(serials),
                       vendor=vendor, sys_descr=sys_descr)
