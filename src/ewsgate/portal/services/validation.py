"""Field validators shared by every service: each returns the clean value or raises
:class:`InvalidInput` naming the field, what was given and what is expected.

They accept what both callers send: JSON values from the REST API and strings from HTML forms
(``"161"`` for a port, ``"on"`` for a checkbox, ``"https:443, http:80"`` for EWS endpoints).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ewsgate.portal.services.errors import InvalidInput

__all__ = [
    "check_known",
    "clean_bool",
    "clean_choice",
    "clean_email",
    "clean_endpoints",
    "clean_hostname",
    "clean_int",
    "clean_ip",
    "clean_mac",
    "clean_optional_text",
    "clean_password",
    "clean_text",
]

_MAC_HEX = re.compile(r"^[0-9a-f]{12}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
MIN_PASSWORD = 8


def check_known(values: Mapping[str, Any], allowed: set[str] | frozenset[str]) -> None:
    """Refuse keys the operation does not know (a typo must not be silently ignored)."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"unknown field {unknown[0]!r}; allowed fields: {', '.join(sorted(allowed))}",
            code="unknown_field", field=unknown[0])


def clean_text(field: str, value: Any, *, max_length: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field} must be a non-empty text", field=field)
    text: str = value.strip()
    if len(text) > max_length:
        raise InvalidInput(f"{field} is {len(text)} characters long; at most {max_length}",
                           field=field)
    return text


def clean_optional_text(field: str, value: Any, *, max_length: int = 200) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return clean_text(field, value, max_length=max_length)


def clean_int(field: str, value: Any, *, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must be a whole number, not {value!r}", field=field)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number, got {value!r}", field=field)
    if not low <= value <= high:
        raise InvalidInput(f"{field} {value} is out of range; expected {low} to {high}",
                           code="out_of_range", field=field)
    return value


def clean_bool(field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "on", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "off", "no", ""):
        return False
    raise InvalidInput(f"{field} must be true or false, got {value!r}", field=field)


def clean_choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise InvalidInput(f"{field} {value!r} is not one of {', '.join(choices)}", field=field)


def clean_ip(field: str, value: Any) -> str:
    """An IPv4 or IPv6 address (no host names, no prefixes), in its canonical form."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be an IPv4 or IPv6 address", field=field)
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise InvalidInput(
            f"{field} {value!r} is not an IP address; give an IPv4 (192.0.2.10) or "
            "IPv6 (2001:db8::10) address; put a DNS name in hostname", field=field) from None


def clean_mac(field: str, value: Any) -> str | None:
    """A MAC address in any common notation → ``aa:bb:cc:dd:ee:ff``; empty → None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        digits = re.sub(r"[\s:.\-]", "", value.strip().lower())
        if _MAC_HEX.match(digits):
            return ":".join(digits[i:i + 2] for i in range(0, 12, 2))
    raise InvalidInput(f"{field} {value!r} is not a MAC address; expected e.g. "
                       "00:1b:a9:12:34:56", field=field)


def clean_hostname(field: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        name = value.strip().rstrip(".").lower()
        if len(name) <= 253 and all(_HOSTNAME_LABEL.match(p) for p in name.split(".")):
            return name
    raise InvalidInput(f"{field} {value!r} is not a DNS host name", field=field)


def clean_email(field: str, value: Any) -> str:
    """An e-mail address, lower-cased (logins are case-insensitive)."""
    if isinstance(value, str) and _EMAIL.match(value.strip()) and len(value.strip()) <= 320:
        return value.strip().lower()
    raise InvalidInput(f"{field} {value!r} is not an e-mail address", field=field)


def clean_password(field: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD:
        raise InvalidInput(f"{field} must be at least {MIN_PASSWORD} characters long",
                           code="weak_password", field=field)
    if len(value) > 1024:
        raise InvalidInput(f"{field} is longer than 1024 characters", field=field)
    return value


def clean_endpoints(field: str, value: Any) -> list[dict[str, Any]]:
    """EWS endpoints: a list of ``{"scheme", "port"}`` or text ``"https:443, http:80"``.

    The first is the landing page; duplicates are refused; at most 8.
    """
    items: list[Any]
    if isinstance(value, str):
        items = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            scheme, sep, port = part.partition(":")
            if not sep:
                raise InvalidInput(f"{field}: {part!r} should look like https:443", field=field)
            items.append({"scheme": scheme.strip(), "port": port.strip()})
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidInput(f"{field} must be a list of {{scheme, port}}", field=field)
    if not items:
        raise InvalidInput(f"{field} needs at least one endpoint, e.g. http:80", field=field)
    if len(items) > 8:
        raise InvalidInput(f"{field} has {len(items)} endpoints; at most 8", field=field)
    out: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{where} must be an object with scheme and port", field=field)
        check_known(item, {"scheme", "port"})
        clean = {"scheme": clean_choice(f"{where}.scheme", item.get("scheme"), ("http", "https")),
                 "port": clean_int(f"{where}.port", item.get("port"), low=1, high=65535)}
        if clean in out:
            raise InvalidInput(f"{where} repeats {clean['scheme']}:{clean['port']}", field=field)
        out.append(clean)
    return out
