"""Turning what devices send into comparable values: MAC addresses and serial numbers.

Pure functions, no I/O. Devices are inconsistent:

* MACs arrive as 6 raw bytes (ifPhysAddress), as text in ARP tables, or typed by a person as
  ``A0-D3-C1-4A-2B-3C`` or ``a0d3.c14a.2b3c``; all become ``a0:d3:c1:4a:2b:3c``.
  An all-zero or empty ifPhysAddress (loopback, an unused port) is "no MAC".
* Serials arrive NUL-padded (HP's vendor OID, which tools then show as ``0x434E…``), as the
  literal text ``0x434E…`` (some firmware and recordings), with trailing spaces, or in lower
  case. :func:`decode_serial` undoes the first two; :func:`serials_equal` compares ignoring
  case and surrounding whitespace. A bare hex string without ``0x`` is *not* decoded: ``4142``
  is a plausible serial in its own right.
"""

from __future__ import annotations

import re

__all__ = [
    "MacError",
    "decode_serial",
    "format_mac",
    "mac_from_octets",
    "normalize_mac",
    "normalize_serial",
    "serials_equal",
]

_HEX_TEXT = re.compile(r"^0x((?:[0-9A-Fa-f]{2})+)$")


class MacError(ValueError):
    """Text that is not a MAC address; the message shows the expected form."""


def normalize_mac(text: str) -> str:
    """``A0-D3-C1-4A-2B-3C`` / ``a0d3.c14a.2b3c`` / ``a0d3c14a2b3c`` → ``a0:d3:c1:4a:2b:3c``."""
    digits = "".join(ch for ch in text.strip() if ch not in ":-. ").lower()
    if len(digits) != 12 or any(ch not in "0123456789abcdef" for ch in digits):
        raise MacError(f"{text!r} is not a MAC address; expected six hex bytes such as "
                       "a0:d3:c1:4a:2b:3c")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def format_mac(raw: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in raw)


def mac_from_octets(raw: bytes | None) -> str | None:
    """An ifPhysAddress value → a MAC, or ``None`` for empty, all-zero or non-Ethernet ones."""
    if raw is None or len(raw) != 6 or not any(raw):
        return None
    return format_mac(raw)


def decode_serial(raw: bytes | None) -> str | None:
    """A serial OID's value → text, or ``None`` when empty or not text.

    Strips NUL padding and whitespace; decodes ``0x`` + hex text; keeps printable ASCII only.
    """
    if raw is None:
        return None
    text = raw.replace(b"\x00", b" ").decode("latin-1").strip()
    match = _HEX_TEXT.match(text)
    if match:
        text = bytes.fromhex(match.group(1)).replace(b"\x00", b" ").decode("latin-1").strip()
    if not text or not all(" " <= ch <= "~" for ch in text):
        return None
    return text


def normalize_serial(text: str) -> str:
    """The comparable form of a serial: no surrounding whitespace, upper case."""
    return text.strip().upper()


def serials_equal(expected: str, seen: str) -> bool:
    return normalize_serial(expected) == normalize_serial(seen)
