"""The OIDs the identity check reads, per vendor, and how a make names a vendor.

Sources (see docs/identity.md for the links):

============  ===========================================  ===================================
vendor        serial OID(s), in the order they are asked    source
============  ===========================================  ===================================
(all)         Printer-MIB prtGeneralSerialNumber.1          RFC 3805; librenms, GLPI
              1.3.6.1.2.1.43.5.1.1.17.1
HP            1.3.6.1.4.1.11.2.3.9.4.2.1.1.3.3.0            GLPI HPNetPeripheral.pm, Open-AudIT
              (often NUL-padded, shown hex-encoded)
Ricoh         1.3.6.1.4.1.367.3.2.1.2.1.4.0                 ricohEngSerialNumber
Kyocera       1.3.6.1.4.1.1347.43.5.1.1.28.1                librenms kyocera.inc.php
Canon         1.3.6.1.4.1.1602.1.2.1.8.1.3.1.1, then        GLPI Canon.pm
              1.3.6.1.4.1.1602.1.2.1.4.0 (older table)
Brother       1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.1.0          GLPI BrotherNetConfig.pm
Lexmark       1.3.6.1.4.1.641.6.2.3.1.5.1 (MPS-MIB), then   GLPI Lexmark.pm (with the dot
              1.3.6.1.4.1.641.2.1.2.1.6.1 (LEXMARK-PVT)     GLPI drops put back)
Xerox,        Printer-MIB only                              librenms xerox.inc.php, GLPI
Konica                                                       Konica.pm
============  ===========================================  ===================================

The MAC comes from IF-MIB ``ifPhysAddress.<ifIndex>`` where ``<ifIndex>`` is what IP-MIB maps
the device's IP to: ``ipAdEntIfIndex.<a.b.c.d>`` (RFC 1213 ipAddrTable) or
``ipAddressIfIndex.<type>.<len>.<bytes>`` (RFC 4293 ipAddressTable; the only one for IPv6).

Everything is a tuple of ints; :func:`oid_str` is for messages.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

__all__ = [
    "ENTERPRISE_VENDORS",
    "IF_PHYS_ADDRESS",
    "PRT_GENERAL_SERIAL",
    "SYS_DESCR",
    "SYS_OBJECT_ID",
    "VENDOR_SERIAL_OIDS",
    "Oid",
    "if_index_oids",
    "oid_name",
    "oid_str",
    "parse_oid",
    "serial_oids",
    "vendor_from_make",
    "vendor_from_sys_object_id",
]

Oid = tuple[int, ...]


def parse_oid(text: str) -> Oid:
    return tuple(int(part) for part in text.strip(".").split("."))


def oid_str(name: Oid) -> str:
    return ".".join(str(part) for part in name)


SYS_DESCR = parse_oid("1.3.6.1.2.1.1.1.0")
SYS_OBJECT_ID = parse_oid("1.3.6.1.2.1.1.2.0")
IF_PHYS_ADDRESS = parse_oid("1.3.6.1.2.1.2.2.1.6")
IP_AD_ENT_IF_INDEX = parse_oid("1.3.6.1.2.1.4.20.1.2")
IP_ADDRESS_IF_INDEX = parse_oid("1.3.6.1.2.1.4.34.1.3")
PRT_GENERAL_SERIAL = parse_oid("1.3.6.1.2.1.43.5.1.1.17.1")
ENTERPRISES = parse_oid("1.3.6.1.4.1")

VENDOR_SERIAL_OIDS: Mapping[str, tuple[Oid, ...]] = {
    "hp": (parse_oid("1.3.6.1.4.1.11.2.3.9.4.2.1.1.3.3.0"),),
    "ricoh": (parse_oid("1.3.6.1.4.1.367.3.2.1.2.1.4.0"),),
    "kyocera": (parse_oid("1.3.6.1.4.1.1347.43.5.1.1.28.1"),),
    "canon": (parse_oid("1.3.6.1.4.1.1602.1.2.1.8.1.3.1.1"),
              parse_oid("1.3.6.1.4.1.1602.1.2.1.4.0")),
    "brother": (parse_oid("1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.1.0"),),
    "lexmark": (parse_oid("1.3.6.1.4.1.641.6.2.3.1.5.1"),
                parse_oid("1.3.6.1.4.1.641.2.1.2.1.6.1")),
    "xerox": (),
    "konica": (),
}

#: IANA private enterprise numbers → vendor key
ENTERPRISE_VENDORS: Mapping[int, str] = {
    11: "hp", 367: "ricoh", 1347: "kyocera", 1602: "canon", 2435: "brother", 641: "lexmark",
    253: "xerox", 18334: "konica",
}

_MAKE_WORDS: Mapping[str, str] = {
    "hp": "hp", "hewlett": "hp", "hewlett-packard": "hp", "hpe": "hp",
    "ricoh": "ricoh", "savin": "ricoh", "lanier": "ricoh", "gestetner": "ricoh",
    "kyocera": "kyocera", "kyocera-mita": "kyocera", "canon": "canon", "brother": "brother",
    "lexmark": "lexmark", "xerox": "xerox", "fuji-xerox": "xerox", "fujifilm": "xerox",
    "konica": "konica", "konica-minolta": "konica", "konicaminolta": "konica",
    "minolta": "konica", "develop": "konica",
}

_NAMES: Mapping[Oid, str] = {
    PRT_GENERAL_SERIAL: "Printer-MIB prtGeneralSerialNumber.1",
    **{name: f"{vendor} serial OID {oid_str(name)}"
       for vendor, names in VENDOR_SERIAL_OIDS.items() for name in names},
}


def oid_name(name: Oid) -> str:
    """A readable name for a serial source, for messages."""
    return _NAMES.get(name, oid_str(name))


def vendor_from_make(make: str | None) -> str | None:
    """``"HP Inc."`` → ``"hp"``, ``"Konica Minolta"`` → ``"konica"``; ``None`` if unknown."""
    if not make:
        return None
    text = make.strip().lower().replace("_", "-").replace(".", " ").replace(",", " ")
    joined = "-".join(text.split())
    if joined in _MAKE_WORDS:
        return _MAKE_WORDS[joined]
    for word in [*text.split(), *joined.split("-")]:
        if word in _MAKE_WORDS:
            return _MAKE_WORDS[word]
    return None


def vendor_from_sys_object_id(value: Oid | None) -> str | None:
    """The vendor whose enterprise subtree holds ``sysObjectID``; ``None`` if not one we know."""
    if not value or len(value) <= len(ENTERPRISES) or value[: len(ENTERPRISES)] != ENTERPRISES:
        return None
    return ENTERPRISE_VENDORS.get(value[len(ENTERPRISES)])


def serial_oids(vendor: str | None) -> tuple[Oid, ...]:
    """Where to look for the serial: Printer-MIB first, then the vendor's OIDs.

    With no known vendor, every vendor OID is asked (one GET; absent ones come back empty).
    """
    if vendor is None:
        extra = tuple(name for names in VENDOR_SERIAL_OIDS.values() for name in names)
    else:
        extra = VENDOR_SERIAL_OIDS.get(vendor, ())
    return (PRT_GENERAL_SERIAL, *extra)


def if_index_oids(ip: str) -> tuple[Oid, ...]:
    """The OIDs whose value is the ifIndex of the interface holding ``ip``."""
    address = ipaddress.ip_address(ip)
    packed = tuple(address.packed)
    if address.version == 4:
        return (IP_AD_ENT_IF_INDEX + packed, (*IP_ADDRESS_IF_INDEX, 1, 4, *packed))
    return ((*IP_ADDRESS_IF_INDEX, 2, 16, *packed),)
