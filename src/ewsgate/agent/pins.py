"""Device pins: the second identity factor, kept by the portal across sessions (pure rules).

An SNMP answer with the recorded serial or MAC is one factor: a host on the customer's LAN
that knows the community can give it. The portal therefore keeps, per device, what the agent
saw at the first verified session (trust on first use) and the agent checks it every time:

* ``ews_cert_sha256`` - the SHA-256 of the certificate the device's HTTPS web server presents
  (the same fingerprint the tunnel's per-session pin uses, lower-case hex);
* ``mac`` - the MAC in the agent host's neighbour table for the device's IP, where the device
  is on-link (an off-link device has no entry: its packets come through a router).

Rules (:func:`judge_pins`; ``pinned`` = the portal holds a value, ``seen`` = what the agent
observed just now)::

    pin held, seen equal              → verified (that factor holds)
    pin held, seen different          → mismatch   cert_pin_mismatch / mac_pin_mismatch
    pin held, nothing seen            → unknown    cert_pin_unchecked / mac_pin_unchecked
    no pin                            → verified; what was seen is reported as ``learned``
                                        so the portal can pin it (first verified session)

A mismatch or an unchecked pin fails closed like any identity failure; the sentence says what
was expected, what was found and that an Administrator may reset the pin after checking the
device (a renewed certificate or a replaced network card is a legitimate change).

No I/O here: :mod:`ewsgate.agent.pin_probe` observes, this module decides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ewsgate.agent.snmp.values import MacError, normalize_mac

__all__ = [
    "DevicePins",
    "Observation",
    "PinError",
    "PinVerdict",
    "judge_pins",
    "normalize_fingerprint",
    "verdict_payload",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")
RESET_ADVICE = ("if the device really changed (a renewed certificate, a new network card), an "
                "Administrator can reset its identity pins on the device page after checking "
                "the device; otherwise check the device's IP in the portal")


class PinError(ValueError):
    """A pin value that cannot be a fingerprint or a MAC; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def normalize_fingerprint(value: str) -> str:
    """``AB:CD:…`` or ``abcd…`` (SHA-256, 32 bytes) → 64 lower-case hex digits."""
    text = value.strip().lower().replace(":", "").replace(" ", "")
    if not _HEX64.fullmatch(text):
        raise PinError("pins.bad_fingerprint",
                       f"{value!r} is not a SHA-256 certificate fingerprint (64 hex digits)")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePins:
    """What the portal pinned for a device; ``None`` = not pinned (yet)."""

    ews_cert_sha256: str | None = None
    mac: str | None = None

    def __post_init__(self) -> None:
        if self.ews_cert_sha256 is not None:
            object.__setattr__(self, "ews_cert_sha256",
                               normalize_fingerprint(self.ews_cert_sha256))
        if self.mac is not None:
            try:
                object.__setattr__(self, "mac", normalize_mac(self.mac))
            except MacError as exc:
                raise PinError("pins.bad_mac", f"pinned MAC: {exc}") from None

    @classmethod
    def from_payload(cls, value: object) -> DevicePins:
        """From a command payload's ``pins`` object (absent or ``null`` = no pins)."""
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise PinError("pins.bad_payload", "'pins' must be an object")
        cert, mac = value.get("ews_cert_sha256"), value.get("mac")
        return cls(ews_cert_sha256=str(cert) if cert else None, mac=str(mac) if mac else None)

    def as_payload(self) -> dict[str, str | None]:
        return {"ews_cert_sha256": self.ews_cert_sha256, "mac": self.mac}

    def merged(self, learned: DevicePins) -> DevicePins:
        """These pins, with ``learned`` values filling the ones not held."""
        return DevicePins(ews_cert_sha256=self.ews_cert_sha256 or learned.ews_cert_sha256,
                          mac=self.mac or learned.mac)

    @property
    def empty(self) -> bool:
        return self.ews_cert_sha256 is None and self.mac is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What the agent saw at the device just now (``None`` = not seen)."""

    #: the HTTPS endpoint's certificate fingerprint, and the port it was read on
    ews_cert_sha256: str | None = None
    tls_port: int | None = None
    #: why no certificate was read although an HTTPS endpoint is configured
    cert_error: str | None = None
    #: the neighbour-table MAC for the device IP (on-link only)
    on_link_mac: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PinVerdict:
    """The pins' outcome; only ``verified`` lets the session go on."""

    result: Literal["verified", "mismatch", "unknown"]
    code: str
    detail: str
    #: what this check saw, for the portal to pin when it holds nothing yet
    learned: DevicePins

    @property
    def verified(self) -> bool:
        return self.result == "verified"


def judge_pins(ip: str, pins: DevicePins, seen: Observation) -> PinVerdict:
    """Compare what was seen at ``ip`` with the pins; see the module docstring."""
    learned = DevicePins(ews_cert_sha256=seen.ews_cert_sha256, mac=seen.on_link_mac)
    where = f"port {seen.tls_port}" if seen.tls_port else "its HTTPS endpoint"
    if pins.ews_cert_sha256 is not None:
        if seen.ews_cert_sha256 is None:
            why = seen.cert_error or "the device has no HTTPS endpoint configured"
            return PinVerdict(
                result="unknown", code="cert_pin_unchecked", learned=learned,
                detail=f"device identity unknown at {ip}: its web server certificate is pinned "
                       f"(SHA-256 {pins.ews_cert_sha256}) but could not be read ({why}); "
                       "check that the device is on and its HTTPS port is reachable, or "
                       f"{RESET_ADVICE}")
        if seen.ews_cert_sha256 != pins.ews_cert_sha256:
            return PinVerdict(
                result="mismatch", code="cert_pin_mismatch", learned=learned,
                detail=f"device identity mismatch at {ip}: expected web server certificate "
                       f"SHA-256 {pins.ews_cert_sha256} (pinned at an earlier verified "
                       f"session), found {seen.ews_cert_sha256} on {where}; another host may "
                       f"be answering at this address; {RESET_ADVICE}")
    if pins.mac is not None:
        if seen.on_link_mac is None:
            return PinVerdict(
                result="unknown", code="mac_pin_unchecked", learned=learned,
                detail=f"device identity unknown at {ip}: the device's on-link MAC is pinned "
                       f"({pins.mac}) but this host's neighbour table has no entry for {ip} "
                       "now (the device is off, or no longer on the agent's network segment); "
                       f"{RESET_ADVICE}")
        if seen.on_link_mac != pins.mac:
            return PinVerdict(
                result="mismatch", code="mac_pin_mismatch", learned=learned,
                detail=f"device identity mismatch at {ip}: expected on-link MAC {pins.mac} "
                       f"(pinned at an earlier verified session), found {seen.on_link_mac} in "
                       f"this host's neighbour table; another host may be answering at this "
                       f"address; {RESET_ADVICE}")
    held = [name for name, value in (("certificate", pins.ews_cert_sha256),
                                     ("MAC", pins.mac)) if value]
    new = [name for name, value, pinned in (
        ("certificate", seen.ews_cert_sha256, pins.ews_cert_sha256),
        ("MAC", seen.on_link_mac, pins.mac)) if value and not pinned]
    parts = []
    if held:
        parts.append(f"pinned {' and '.join(held)} match")
    if new:
        parts.append(f"{' and '.join(new)} seen for the first time (the portal pins it)")
    if not parts:
        parts.append("no second factor available (no HTTPS certificate, not on-link)")
    return PinVerdict(result="verified", code="pins_verified", learned=learned,
                      detail="; ".join(parts))


def verdict_payload(verdict: PinVerdict) -> dict[str, Any]:
    """The ``pins`` part of a VerifyDevice result."""
    return {"result": verdict.result, "code": verdict.code, "detail": verdict.detail,
            "learned": verdict.learned.as_payload()}
