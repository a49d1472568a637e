"""The whole device check: the SNMP/ARP identity, then the device's pins (two factors).

:func:`run_check` is what ``VerifyDevice``, ``OpenSession`` and every re-verification during
a session run::

    check_identity (SNMP serial/MAC or neighbour table)   ── not verified ──► that result
        │ verified
        ▼
    observe (one TLS handshake to the HTTPS endpoint, one neighbour-table lookup)
        ▼
    judge_pins against the pins the portal sent          ── mismatch/unknown ──► that result
        │ verified
        ▼
    verified; ``learned`` = what was seen, for the portal to pin on first use

The payload (a ``VerifyDevice`` payload, see :mod:`ewsgate.agent.commands`) gains two keys:
``pins`` (``{"ews_cert_sha256", "mac"}``, values ``null`` when not pinned) and ``tls_port``
(the device's first HTTPS endpoint, ``null`` when it has none). An old portal that sends
neither gets the one-factor check it had, with ``learned`` filled in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ewsgate.agent.address_policy import AddressPolicy
from ewsgate.agent.identity import IdentityRequest, IdentityResult, check_identity
from ewsgate.agent.pin_probe import observe
from ewsgate.agent.pins import DevicePins, PinVerdict, judge_pins, verdict_payload
from ewsgate.agent.snmp.client import SnmpClient, SnmpSettings
from ewsgate.agent.snmp.neighbours import NeighbourTable, SystemNeighbourTable

__all__ = ["CheckOutcome", "DeviceCheck", "run_check"]

_SNMP_FIELDS = {"version", "port", "community", "v3_user", "v3_auth_key", "v3_priv_key",
                "v3_auth_protocol", "v3_priv_protocol", "retries"}


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceCheck:
    """What to check at one device: the identity request and the pins held for it."""

    request: IdentityRequest
    pins: DevicePins = field(default_factory=DevicePins)
    tls_port: int | None = None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DeviceCheck:
        """Parse a VerifyDevice payload; raises ``ValueError`` subclasses (with a ``code``
        where one is defined) or ``TypeError`` on anything malformed."""
        snmp_fields = payload.get("snmp") or {}
        if not isinstance(snmp_fields, Mapping):
            raise TypeError("'snmp' must be an object")
        snmp = SnmpSettings(**{k: v for k, v in snmp_fields.items()
                               if k in _SNMP_FIELDS and v is not None})
        request = IdentityRequest(
            ip=str(payload.get("ip", "")), method=payload.get("method", "mac"),
            make=str(payload.get("make") or ""), expected_mac=payload.get("expected_mac"),
            expected_serial=payload.get("expected_serial"), snmp=snmp,
            timeout=float(payload.get("timeout", 4.0)), ews_port=payload.get("ews_port"))
        tls_port = payload.get("tls_port")
        if tls_port is not None and (not isinstance(tls_port, int) or not 0 < tls_port < 65536):
            raise ValueError(f"tls_port {tls_port!r}: use 1 to 65535 or null")
        return cls(request=request, pins=DevicePins.from_payload(payload.get("pins")),
                   tls_port=tls_port)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOutcome:
    """The combined outcome. Only ``result == "verified"`` lets a session go on."""

    result: str
    code: str
    detail: str
    identity: IdentityResult
    #: ``None`` when the identity check did not verify (pins are not looked at then)
    pins: PinVerdict | None = None

    @property
    def verified(self) -> bool:
        return self.result == "verified"

    @property
    def learned(self) -> DevicePins:
        return self.pins.learned if self.pins is not None else DevicePins()

    def as_payload(self) -> dict[str, Any]:
        """The VerifyDevice result (see :mod:`ewsgate.agent.commands`), plus ``pins``."""
        identity = self.identity
        return {"result": self.result, "code": self.code, "detail": self.detail,
                "seen_mac": identity.seen_mac, "seen_serial": identity.seen_serial,
                "method_used": identity.method_used, "duration": round(identity.duration, 4),
                "pins": verdict_payload(self.pins) if self.pins is not None else None}


def refused_by(policy: AddressPolicy, ip: str) -> CheckOutcome | None:
    """``None`` when ``policy`` lets the agent send to the device's ``ip``; else the *unknown*
    outcome that says why, before any SNMP request, ARP priming or TCP connect."""
    refusal = policy.check(ip)
    if refusal is None:
        return None
    return CheckOutcome(result="unknown", code=refusal.code, detail=refusal.message,
                        identity=IdentityResult(result="unknown", detail=refusal.message,
                                                code=refusal.code))


async def run_check(check: DeviceCheck, *, arp_table: NeighbourTable | None = None,
                    snmp_client: SnmpClient | None = None,
                    clock: Callable[[], float] = time.monotonic) -> CheckOutcome:
    """Run the identity check and, when it verifies, the pins; never raises for the network.

    The caller has put the IP to the address policy first (:func:`refused_by`).
    """
    identity = await check_identity(check.request, arp_table=arp_table, clock=clock,
                                    snmp_client=snmp_client)
    if not identity.verified:
        return CheckOutcome(result=identity.result, code=identity.code, detail=identity.detail,
                            identity=identity)
    # Every verified check looks up the on-link MAC: /proc/net/arp, then rtnetlink for IPv6
    # (nothing forks a child process beside gRPC's threads)
    table = arp_table if arp_table is not None else SystemNeighbourTable()
    seen = await observe(check.request.ip, tls_port=check.tls_port, table=table,
                         budget=min(3.0, check.request.timeout))
    verdict = judge_pins(check.request.ip, check.pins, seen)
    if not verdict.verified:
        return CheckOutcome(result=verdict.result, code=verdict.code, detail=verdict.detail,
                            identity=identity, pins=verdict)
    return CheckOutcome(result="verified", code="verified",
                        detail=f"{identity.detail}; {verdict.detail}", identity=identity,
                        pins=verdict)
