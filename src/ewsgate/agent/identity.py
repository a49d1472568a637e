"""Device identity check: is the host at this IP really the device the portal recorded?

The one entry point is :func:`check_identity`. The portal's ``VerifyDevice`` and
``OpenSession`` commands call it before anything is dialled; only ``verified`` lets a session
go on, and *anything else fails closed* (an IP that now points at another host must never be
reached, and "we could not tell" is treated the same as "it is another host").

Rules (docs/identity.md has the full table and sources)::

    method "mac"                                   method "serial"
    ───────────────────────────────────────        ─────────────────────────────────────
    SNMP: ifPhysAddress of the interface that      SNMP: Printer-MIB prtGeneralSerialNumber,
    holds the IP (ipAddrTable); if unmapped,       then the vendor's serial OIDs (make, or
    verified when any interface has the MAC        sysObjectID's enterprise); verified when
                                                   any of them equals the expected serial
    SNMP silent / off: the ARP/neighbour table     SNMP silent / off: unknown (no serial
    (optionally primed by one TCP connect)         without SNMP)

    v3 credentials refused (USM report): unknown, no fallback - the device is there but
    does not trust us, and a neighbour-table MAC would hide a configuration error.

The result's ``detail`` is a sentence for a person: what happened, why, what to do.
``code`` is the stable machine form (``verified``, ``mac_mismatch``, ``serial_mismatch``,
``snmp_no_answer``, ``snmp_v3_auth_failed``, ``snmp_error``, ``no_serial``, ``no_mac``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ewsgate.agent.snmp.client import (
    SnmpAuthFailed,
    SnmpClient,
    SnmpError,
    SnmpNoAnswer,
    SnmpSettings,
    SnmpSettingsError,
    shared_client,
)
from ewsgate.agent.snmp.neighbours import NeighbourTable, SystemNeighbourTable, prime_neighbour
from ewsgate.agent.snmp.oids import oid_name, serial_oids
from ewsgate.agent.snmp.probe import SnmpReading, read_snmp_identity
from ewsgate.agent.snmp.values import MacError, normalize_mac, serials_equal

__all__ = [
    "IdentityRequest",
    "IdentityRequestError",
    "IdentityResult",
    "SnmpSettings",
    "check_identity",
]

Outcome = Literal["verified", "mismatch", "unknown"]
NO_ANSWER = "no SNMP answer (wrong community, SNMP disabled, or a filtered port)"


class IdentityRequestError(ValueError):
    """A request that cannot be checked; ``code`` is stable, the message says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityRequest:
    """What to check: the device's recorded IP and the identity the portal expects there."""

    ip: str
    method: Literal["mac", "serial"]
    #: the make/vendor as recorded (``"HP"``, ``"Konica Minolta"``); picks the serial OIDs
    make: str = ""
    expected_mac: str | None = None
    expected_serial: str | None = None
    snmp: SnmpSettings = field(default_factory=SnmpSettings)
    #: the whole check's budget in seconds (SNMP and the neighbour-table fallback together)
    timeout: float = 4.0
    #: the device's web port; when set, one TCP connect primes the neighbour table
    ews_port: int | None = None

    def __post_init__(self) -> None:
        try:
            address = ipaddress.ip_address(self.ip)
        except ValueError:
            raise IdentityRequestError("identity.bad_ip",
                                       f"{self.ip!r} is not an IP address; record the "
                                       "device's IPv4 or IPv6 address") from None
        if address.is_unspecified or address.is_multicast:
            raise IdentityRequestError("identity.bad_ip",
                                       f"{self.ip} cannot be a device address")
        object.__setattr__(self, "ip", str(address))
        if self.method == "mac":
            if not self.expected_mac:
                raise IdentityRequestError("identity.no_expected_mac",
                                           "identity method 'mac' needs the device's recorded "
                                           "MAC address")
            try:
                object.__setattr__(self, "expected_mac", normalize_mac(self.expected_mac))
            except MacError as exc:
                raise IdentityRequestError("identity.bad_expected_mac",
                                           f"recorded MAC: {exc}") from None
        elif self.method == "serial":
            if not self.expected_serial or not self.expected_serial.strip():
                raise IdentityRequestError("identity.no_expected_serial",
                                           "identity method 'serial' needs the device's "
                                           "recorded serial number")
        else:
            raise IdentityRequestError("identity.bad_method",
                                       f"identity method {self.method!r}: use 'mac' or 'serial'")
        if not 0.1 <= self.timeout <= 60:
            raise IdentityRequestError("identity.bad_timeout",
                                       "identity check timeout: use 0.1 to 60 seconds")
        if self.ews_port is not None and not 0 < self.ews_port < 65536:
            raise IdentityRequestError("identity.bad_port",
                                       f"web port {self.ews_port}: use 1 to 65535")

    @property
    def expected(self) -> str:
        return (self.expected_mac if self.method == "mac" else self.expected_serial) or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityResult:
    """The outcome. Only ``result == "verified"`` may let a session proceed."""

    result: Outcome
    #: a sentence for a person: what was found, or why nothing could be
    detail: str
    #: stable machine-readable reason (see the module docstring)
    code: str
    seen_mac: str | None = None
    seen_serial: str | None = None
    #: where the deciding value came from; ``None`` when nothing answered
    method_used: Literal["snmp", "arp"] | None = None
    #: seconds the check took
    duration: float = 0.0

    @property
    def verified(self) -> bool:
        return self.result == "verified"


def _mismatch_detail(request: IdentityRequest, what: str, found: str, where: str) -> str:
    return (f"device identity mismatch at {request.ip}: expected {what} {request.expected}, "
            f"found {found} ({where}); check the device's IP in the portal")


def _judge_snmp(request: IdentityRequest, reading: SnmpReading) -> IdentityResult | None:
    """Decide from an SNMP reading; ``None`` means SNMP gave no MAC (try the neighbour table)."""
    label = request.snmp.label
    first_serial = reading.serials[0][1] if reading.serials else None
    seen_mac = reading.mac or (reading.interface_macs[0][1] if reading.interface_macs else None)
    if request.method == "serial":
        expected = request.expected_serial or ""
        for name, serial in reading.serials:
            if serials_equal(expected, serial):
                return IdentityResult(
                    result="verified", code="verified", seen_mac=seen_mac, seen_serial=serial,
                    method_used="snmp",
                    detail=f"device identity verified at {request.ip}: serial {serial} "
                           f"({oid_name(name)}, {label})")
        if first_serial is not None:
            name = reading.serials[0][0]
            return IdentityResult(
                result="mismatch", code="serial_mismatch", seen_mac=seen_mac,
                seen_serial=first_serial, method_used="snmp",
                detail=_mismatch_detail(request, "serial", first_serial,
                                        f"{oid_name(name)}, {label}"))
        asked = ", ".join(oid_name(name) for name in serial_oids(reading.vendor))
        return IdentityResult(
            result="unknown", code="no_serial", seen_mac=seen_mac, method_used="snmp",
            detail=f"device identity unknown at {request.ip}: the device answers {label} but "
                   f"reports no serial number (asked {asked}); set the device's make in the "
                   "portal or verify it by MAC address")
    expected_mac = request.expected_mac or ""
    if reading.mac is not None:
        where = f"ifPhysAddress.{reading.if_index} of the interface holding {request.ip}, {label}"
        if reading.mac == expected_mac:
            return IdentityResult(result="verified", code="verified", seen_mac=reading.mac,
                                  seen_serial=first_serial, method_used="snmp",
                                  detail=f"device identity verified at {request.ip}: MAC "
                                         f"{reading.mac} ({where})")
        return IdentityResult(result="mismatch", code="mac_mismatch", seen_mac=reading.mac,
                              seen_serial=first_serial, method_used="snmp",
                              detail=_mismatch_detail(request, "MAC", reading.mac, where))
    if reading.interface_macs:
        for index, mac in reading.interface_macs:
            if mac == expected_mac:
                return IdentityResult(
                    result="verified", code="verified", seen_mac=mac, seen_serial=first_serial,
                    method_used="snmp",
                    detail=f"device identity verified at {request.ip}: MAC {mac} "
                           f"(ifPhysAddress.{index}; the device does not map its IP to an "
                           f"interface, so any interface counts; {label})")
        listed = ", ".join(mac for _, mac in reading.interface_macs)
        return IdentityResult(
            result="mismatch", code="mac_mismatch", seen_mac=reading.interface_macs[0][1],
            seen_serial=first_serial, method_used="snmp",
            detail=_mismatch_detail(request, "MAC", listed, f"all interfaces, {label}"))
    return None


async def _from_neighbours(request: IdentityRequest, table: NeighbourTable, why: str,
                           remaining: Callable[[], float], *, prime_first: bool,
                           code: str = "no_mac", seen_serial: str | None = None
                           ) -> IdentityResult:
    """Decide from the neighbour table; ``why`` says why SNMP did not decide, ``code`` is the
    result code when the table has no entry either."""
    if prime_first and request.ews_port:
        await prime_neighbour(request.ip, request.ews_port, budget=min(1.0, remaining()))
    mac = await table.lookup(request.ip)
    if mac is None and request.ews_port and not prime_first and remaining() > 0.1:
        await prime_neighbour(request.ip, request.ews_port, budget=min(1.0, remaining()))
        mac = await table.lookup(request.ip)
    if mac is None:
        return IdentityResult(
            result="unknown", code=code,
            seen_serial=seen_serial,
            detail=f"device identity unknown at {request.ip}: {why}, and this host's "
                   f"ARP/neighbour table has no entry for {request.ip} (the device is off, "
                   "or not on the agent's network segment); check the SNMP settings and the "
                   "device's IP in the portal")
    where = f"this host's ARP/neighbour table; {why}"
    if mac == request.expected_mac:
        return IdentityResult(result="verified", code="verified", seen_mac=mac,
                              seen_serial=seen_serial, method_used="arp",
                              detail=f"device identity verified at {request.ip}: MAC {mac} "
                                     f"({where})")
    return IdentityResult(result="mismatch", code="mac_mismatch", seen_mac=mac,
                          seen_serial=seen_serial, method_used="arp",
                          detail=_mismatch_detail(request, "MAC", mac, where))


async def _check(request: IdentityRequest, table: NeighbourTable, client: SnmpClient,
                 clock: Callable[[], float]) -> IdentityResult:
    deadline = clock() + request.timeout

    def remaining() -> float:
        return max(0.0, deadline - clock())

    settings = request.snmp
    if settings.version == "off":
        if request.method == "serial":
            return IdentityResult(result="unknown", code="no_serial",
                                  detail=f"device identity unknown at {request.ip}: SNMP is off "
                                         "for this device and a serial number can only be read "
                                         "over SNMP; turn SNMP on or verify by MAC address")
        return await _from_neighbours(request, table, "SNMP is off for this device", remaining,
                                      prime_first=True)

    # keep a share of the budget for the neighbour-table fallback when it could apply
    snmp_budget = request.timeout * (0.75 if request.method == "mac" else 1.0)
    try:
        async with asyncio.timeout(snmp_budget):
            reading = await read_snmp_identity(client, request.ip, settings, make=request.make,
                                               budget=snmp_budget)
    except (SnmpNoAnswer, TimeoutError):
        if request.method == "serial":
            return IdentityResult(
                result="unknown", code="snmp_no_answer",
                detail=f"device identity unknown at {request.ip}: {NO_ANSWER} to "
                       f"{settings.label} on UDP port {settings.port}; a serial number can only "
                       "be read over SNMP, so check the SNMP settings or verify by MAC address")
        return await _from_neighbours(
            request, table, f"{NO_ANSWER} to {settings.label} on UDP port {settings.port}",
            remaining, prime_first=False, code="snmp_no_answer")
    except SnmpAuthFailed as exc:
        return IdentityResult(
            result="unknown", code="snmp_v3_auth_failed",
            detail=f"device identity unknown at {request.ip}: the device refused our "
                   f"{settings.label} credentials ({exc}); check the v3 user, keys and "
                   "protocols in the portal")
    except SnmpError as exc:
        return IdentityResult(result="unknown", code="snmp_error",
                              detail=f"device identity unknown at {request.ip}: {exc}")
    judged = _judge_snmp(request, reading)
    if judged is not None:
        return judged
    first_serial = reading.serials[0][1] if reading.serials else None
    return await _from_neighbours(request, table, f"the device answers {settings.label} but "
                                  "reports no interface MAC", remaining, prime_first=False,
                                  seen_serial=first_serial)


async def check_identity(
    request: IdentityRequest,
    *,
    arp_table: NeighbourTable | None = None,
    clock: Callable[[], float] = time.monotonic,
    snmp_client: SnmpClient | None = None,
) -> IdentityResult:
    """Check that the device at ``request.ip`` is the one the portal recorded.

    Never raises for what the network or the device does: every failure is an ``unknown``
    result with the reason. ``arp_table`` defaults to this host's table
    (:class:`~ewsgate.agent.snmp.neighbours.SystemNeighbourTable`); ``snmp_client`` to the
    running loop's shared engine. ``clock`` measures ``duration`` and the budget.
    """
    started = clock()
    table = arp_table if arp_table is not None else SystemNeighbourTable()
    client = snmp_client if snmp_client is not None else shared_client()
    try:
        result = await _check(request, table, client, clock)
    except SnmpSettingsError as exc:  # pragma: no cover - settings are validated earlier
        result = IdentityResult(result="unknown", code=exc.code,
                                detail=f"device identity unknown at {request.ip}: {exc}")
    except OSError as exc:
        result = IdentityResult(result="unknown", code="local_error",
                                detail=f"device identity unknown at {request.ip}: this host "
                                       f"could not send the check ({exc.strerror or exc}); "
                                       "check the agent's network")
    return dataclasses.replace(result, duration=clock() - started)
