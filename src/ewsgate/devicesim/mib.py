"""The simulated printer's MIB: a vendor table and a pure, sorted OID → value table.

Theory of operation. A real printer answers SNMP from a handful of standard MIBs plus its
vendor's private subtree. The identity checks read exactly these, so this module builds them:

    SNMPv2-MIB  system    sysDescr, sysObjectID, sysUpTime, sysContact, sysName, sysLocation
    IF-MIB      ifTable   a software loopback at ifIndex 1 and the Ethernet port at a chosen,
                          vendor-specific ifIndex (never 1), whose ifPhysAddress is the MAC
    IP-MIB      ipAddrTable  the device IP → the Ethernet ifIndex (and 127.0.0.1 → loopback)
    HOST-RESOURCES-MIB  hrDeviceDescr.1 (the model)
    Printer-MIB prtGeneralPrinterName.1 (model), prtGeneralSerialNumber.1 (serial)
    vendor      the vendor's serial OID(s) (and model OID where one is known)

The Ethernet port sits at an ifIndex other than 1 on purpose: tools that read
``ifPhysAddress.1`` get the loopback's empty address, so a check that follows ipAddrTable (as
ours must) is told apart from one that guesses.

The OIDs here are written out independently of the agent's table
(:mod:`ewsgate.agent.snmp.oids`), so a test of the agent against this simulator checks two
tables against each other rather than one table against itself.

:class:`MibTable` is a pure, immutable lookup structure (exact GET and lexicographic GETNEXT
by bisection); values are ``bytes``, ``int``, OID tuples, or :class:`Counter`/:class:`Gauge`/
:class:`TimeTicks` markers, or a zero-argument callable producing one of these (sysUpTime).
No SNMP library is imported here; the agent adapter turns values into wire types.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "VENDORS",
    "Gauge",
    "IpAddress",
    "MibTable",
    "MibValue",
    "Oid",
    "SerialEncoding",
    "TimeTicks",
    "VendorProfile",
    "build_printer_mib",
    "encode_serial",
    "oid",
    "parse_mac",
    "vendor_for_profile",
]

Oid = tuple[int, ...]
SerialEncoding = Literal["plain", "nul-padded", "hex-text"]


@dataclass(frozen=True, slots=True)
class Gauge:
    """An SNMP Gauge32 value (ifSpeed, ifMtu are served as Integer/Gauge)."""

    value: int


@dataclass(frozen=True, slots=True)
class IpAddress:
    """An SNMP IpAddress value (4 bytes), as in ipAdEntAddr."""

    packed: bytes


@dataclass(frozen=True, slots=True)
class TimeTicks:
    """An SNMP TimeTicks value, in hundredths of a second."""

    value: int


MibScalar = bytes | int | Oid | Gauge | IpAddress | TimeTicks
MibValue = MibScalar | Callable[[], MibScalar]


def oid(text: str) -> Oid:
    """``"1.3.6.1"`` → ``(1, 3, 6, 1)``; a leading dot is allowed."""
    parts = text.strip().lstrip(".").split(".")
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(f"{text!r} is not a dotted OID such as 1.3.6.1.2.1.1.1.0")
    return tuple(int(part) for part in parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class VendorProfile:
    """What one vendor's printer answers. ``serial_oids`` are the vendor's private serial OIDs."""

    name: str
    enterprise: int
    sys_object_id: str
    sys_descr: str
    model: str
    if_index: int
    if_descr: str
    serial_oids: tuple[str, ...] = ()
    model_oid: str | None = None
    #: how the vendor OID carries the serial by default (HP pads with NULs, which fleet tools
    #: then show hex-encoded)
    serial_encoding: SerialEncoding = "plain"
    aliases: tuple[str, ...] = field(default_factory=tuple)


# Serial OIDs: HP (GLPI HPNetPeripheral.pm, Open-AudIT snmp_11_helper.php), Ricoh
# (ricohEngSerialNumber), Kyocera (librenms kyocera.inc.php), Canon (GLPI Canon.pm;
# canServInfoSerialNumberDeviceNumber and the older table), Brother (GLPI BrotherNetConfig.pm,
# brInfoSerialNumber), Lexmark (GLPI Lexmark.pm: MPS-MIB, then LEXMARK-PVT prtgenSerialNo).
# Xerox and Konica Minolta are read through the Printer-MIB only. sysObjectID values sit under
# each vendor's IANA enterprise number; the suffixes are illustrative.
VENDORS: Mapping[str, VendorProfile] = {
    profile.name: profile
    for profile in (
        VendorProfile(
            name="hp", enterprise=11, sys_object_id="1.3.6.1.4.1.11.2.3.9.1",
            sys_descr="HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD153,"
                      "EEPROM JSI24090012,CIDATE 05/21/2024",
            model="HP Color LaserJet MFP M480f", if_index=2, if_descr="HP ETHERNET",
            serial_oids=("1.3.6.1.4.1.11.2.3.9.4.2.1.1.3.3.0",),
            model_oid="1.3.6.1.4.1.11.2.3.9.4.2.1.1.3.2.0",
            serial_encoding="nul-padded", aliases=("hewlett-packard", "hp-inc", "hpe"),
        ),
        VendorProfile(
            name="ricoh", enterprise=367, sys_object_id="1.3.6.1.4.1.367.1.1",
            sys_descr="RICOH IM C3000 1.10 / RICOH Network Printer C model / "
                      "RICOH Network Scanner C model",
            model="RICOH IM C3000", if_index=3, if_descr="ncmac0",
            serial_oids=("1.3.6.1.4.1.367.3.2.1.2.1.4.0",), aliases=("savin", "lanier"),
        ),
        VendorProfile(
            name="kyocera", enterprise=1347, sys_object_id="1.3.6.1.4.1.1347.41",
            sys_descr="KYOCERA Document Solutions Printing System",
            model="ECOSYS M3655idn", if_index=2, if_descr="Ethernet",
            serial_oids=("1.3.6.1.4.1.1347.43.5.1.1.28.1",), aliases=("kyocera-mita",),
        ),
        VendorProfile(
            name="canon", enterprise=1602, sys_object_id="1.3.6.1.4.1.1602.4.7",
            sys_descr="Canon iR-ADV C5535 /P", model="iR-ADV C5535", if_index=4,
            if_descr="Canon Ethernet",
            serial_oids=("1.3.6.1.4.1.1602.1.2.1.8.1.3.1.1", "1.3.6.1.4.1.1602.1.2.1.4.0"),
        ),
        VendorProfile(
            name="brother", enterprise=2435, sys_object_id="1.3.6.1.4.1.2435.2.3.9.1",
            sys_descr="Brother NC-8800w, Firmware Ver.1.01  (23.03.15),MID 8CE-K0C,FID 2",
            model="Brother MFC-L8900CDW", if_index=2, if_descr="Brother NC-8800w",
            serial_oids=("1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.1.0",),
        ),
        VendorProfile(
            name="lexmark", enterprise=641, sys_object_id="1.3.6.1.4.1.641.1.1",
            sys_descr="Lexmark CX725 version CXTPC.081.215 kernel 5.4.85-yocto-standard",
            model="Lexmark CX725", if_index=2, if_descr="eth0",
            serial_oids=("1.3.6.1.4.1.641.6.2.3.1.5.1", "1.3.6.1.4.1.641.2.1.2.1.6.1"),
        ),
        VendorProfile(
            name="xerox", enterprise=253, sys_object_id="1.3.6.1.4.1.253.8.62.1.23.1.1.1",
            sys_descr="Xerox VersaLink C405 MFP; SS 68.25.71, NC 68.25.71, UI 68.25.71",
            model="Xerox VersaLink C405", if_index=2, if_descr="Xerox Ethernet",
            aliases=("fuji-xerox", "fujifilm"),
        ),
        VendorProfile(
            name="konica", enterprise=18334, sys_object_id="1.3.6.1.4.1.18334.1.1.1.2.1.141",
            sys_descr="KONICA MINOLTA bizhub C300i", model="bizhub C300i", if_index=2,
            if_descr="KONICA MINOLTA Ethernet",
            aliases=("konica-minolta", "konicaminolta", "minolta", "develop"),
        ),
    )
}


def vendor_for_profile(name: str) -> VendorProfile:
    """The vendor behind a device profile name: ``hp``, ``hp-futuresmart``, ``Konica Minolta``.

    Matches the name, an alias, or the part before the first ``-``/``_``/space; raises
    ``ValueError`` listing the known vendors otherwise.
    """
    key = name.strip().lower().replace(" ", "-").replace("_", "-")
    for candidate in (key, key.split("-", 1)[0]):
        if candidate in VENDORS:
            return VENDORS[candidate]
        for profile in VENDORS.values():
            if candidate in profile.aliases or key in profile.aliases:
                return profile
    raise ValueError(f"unknown printer vendor {name!r}; known: {', '.join(sorted(VENDORS))}")


def parse_mac(text: str) -> bytes:
    """Six bytes from ``a0:d3:c1:4a:2b:3c``, ``A0-D3-…``, ``a0d3.c14a.2b3c`` or 12 hex digits."""
    digits = "".join(ch for ch in text.strip() if ch not in ":-. ")
    if len(digits) != 12:
        raise ValueError(f"{text!r} is not a MAC address such as a0:d3:c1:4a:2b:3c")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"{text!r} is not a MAC address such as a0:d3:c1:4a:2b:3c") from None


def encode_serial(serial: str, encoding: SerialEncoding) -> bytes:
    """The serial as the device puts it on the wire.

    ``nul-padded`` appends NULs to a 16-byte field (so fleet tools print it as ``0x…``);
    ``hex-text`` sends the ASCII text ``0x`` + hex digits, as some firmware and recordings do.
    """
    raw = serial.encode("ascii")
    if encoding == "nul-padded":
        return raw + b"\x00" * max(2, 16 - len(raw))
    if encoding == "hex-text":
        return b"0x" + raw.hex().upper().encode("ascii")
    return raw


class MibTable:
    """An immutable OID → value table with exact and next lookups (GET and GETNEXT)."""

    __slots__ = ("_keys", "_values")

    def __init__(self, entries: Mapping[Oid, MibValue] | Iterable[tuple[Oid, MibValue]]):
        items = dict(entries.items() if isinstance(entries, Mapping) else entries)
        self._keys: list[Oid] = sorted(items)
        self._values: dict[Oid, MibValue] = items

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def get(self, name: Oid) -> MibScalar | None:
        """The value at exactly ``name``, or ``None`` (noSuchInstance)."""
        value = self._values.get(name)
        return value() if callable(value) else value

    def next(self, name: Oid) -> tuple[Oid, MibScalar] | None:
        """The first entry strictly after ``name``, or ``None`` (endOfMibView)."""
        index = bisect.bisect_right(self._keys, name)
        if index >= len(self._keys):
            return None
        key = self._keys[index]
        value = self._values[key]
        return key, value() if callable(value) else value

    def oids(self) -> list[Oid]:
        return list(self._keys)


def build_printer_mib(
    profile: VendorProfile,
    *,
    mac: bytes,
    serial: str,
    device_ip: str,
    if_index: int | None = None,
    sys_name: str | None = None,
    model: str | None = None,
    ip_addr_table: bool = True,
    printer_mib_serial: bool = True,
    vendor_serial: bool = True,
    serial_encoding: SerialEncoding | None = None,
    uptime: Callable[[], TimeTicks] | None = None,
) -> MibTable:
    """The printer's whole MIB for one vendor profile.

    ``if_index`` overrides the vendor's Ethernet ifIndex (it must not be 1: the loopback).
    An IPv4 ``device_ip`` is served in ipAddrTable, an IPv6 one in ipAddressTable
    (ipAddressIfIndex). ``ip_addr_table=False`` leaves the address mapping out;
    ``printer_mib_serial=False`` and ``vendor_serial=False`` leave out one serial source.
    """
    if len(mac) != 6:
        raise ValueError("the MAC address must be 6 bytes")
    eth = profile.if_index if if_index is None else if_index
    if eth == 1 or not 1 < eth < 2**31:
        raise ValueError(f"ifIndex {eth} is taken by the loopback or out of range; use 2 or more")
    model = model or profile.model
    encoding = serial_encoding or profile.serial_encoding
    entries: dict[Oid, MibValue] = {}

    def put(name: str, value: MibValue) -> None:
        entries[oid(name)] = value

    system = "1.3.6.1.2.1.1"
    put(f"{system}.1.0", profile.sys_descr.encode())
    put(f"{system}.2.0", oid(profile.sys_object_id))
    put(f"{system}.3.0", uptime if uptime is not None else TimeTicks(0))
    put(f"{system}.4.0", b"")
    put(f"{system}.5.0", (sys_name or f"{profile.name.upper()}{mac.hex()[-6:].upper()}").encode())
    put(f"{system}.6.0", b"")
    put(f"{system}.7.0", 72)

    put("1.3.6.1.2.1.2.1.0", 2)  # ifNumber
    if_entry = "1.3.6.1.2.1.2.2.1"
    interfaces = [
        (1, b"lo", 24, 16436, 10_000_000, b""),
        (eth, profile.if_descr.encode(), 6, 1500, 1_000_000_000, mac),
    ]
    for index, descr, if_type, mtu, speed, phys in interfaces:
        put(f"{if_entry}.1.{index}", index)
        put(f"{if_entry}.2.{index}", descr)
        put(f"{if_entry}.3.{index}", if_type)
        put(f"{if_entry}.4.{index}", mtu)
        put(f"{if_entry}.5.{index}", Gauge(speed))
        put(f"{if_entry}.6.{index}", phys)
        put(f"{if_entry}.7.{index}", 1)
        put(f"{if_entry}.8.{index}", 1)

    ip = ipaddress.ip_address(device_ip)
    if ip_addr_table and ip.version == 4:
        addresses = [(ip.packed, eth, "255.255.255.0")]
        if device_ip != "127.0.0.1":
            addresses.append((bytes((127, 0, 0, 1)), 1, "255.0.0.0"))
        for packed, index, mask in addresses:
            suffix = ".".join(str(part) for part in packed)
            put(f"1.3.6.1.2.1.4.20.1.1.{suffix}", IpAddress(packed))
            put(f"1.3.6.1.2.1.4.20.1.2.{suffix}", index)
            put(f"1.3.6.1.2.1.4.20.1.3.{suffix}", IpAddress(ipaddress.IPv4Address(mask).packed))
    elif ip_addr_table:
        # IP-MIB ipAddressTable (RFC 4293): ipAddressIfIndex.ipv6(2).16.<address bytes>
        suffix = ".".join(str(part) for part in ip.packed)
        put(f"1.3.6.1.2.1.4.34.1.3.2.16.{suffix}", eth)

    put("1.3.6.1.2.1.25.3.2.1.3.1", model.encode())  # hrDeviceDescr.1
    put("1.3.6.1.2.1.43.5.1.1.16.1", model.encode())  # prtGeneralPrinterName.1
    if printer_mib_serial:
        put("1.3.6.1.2.1.43.5.1.1.17.1", serial.encode("ascii"))  # prtGeneralSerialNumber.1
    if vendor_serial:
        for serial_oid in profile.serial_oids:
            put(serial_oid, encode_serial(serial, encoding))
    if profile.model_oid:
        put(profile.model_oid, model.encode())
    return MibTable(entries)
