"""Hosts and URL authorities read the way browsers read them (the WHATWG URL Standard).

A device's ``Location: http://0x0a.0.0.7/`` does not name a public site called ``0x0a.0.0.7``:
a browser's host parser turns it into the IPv4 address 10.0.0.7. So do ``10.0.7`` (three parts,
the last one 16 bits), ``012.0.0.7`` (octal), ``167772167`` (one 32-bit number), ``10.0.0.7.``
(trailing dot), full-width digits (U+FF10 to U+FF19, mapped by IDNA) and ``%31%30.0.0.7``
(percent-encoded). The relay decides whether a redirect leaves the session from the host the
browser will connect to, so it must parse exactly as the browser does; this module is that
parser, written from the URL Standard's algorithms:

- :func:`parse_host` — the *host parser* for special schemes: ``[IPv6]``, percent-decoding,
  domain-to-ASCII (NFKC, lower case, the ideographic full stops as dots, punycode), forbidden
  code points, then the *ends in a number* check and the *IPv4 parser* (1-4 parts, each decimal,
  ``0x`` hex or ``0`` octal, the last part filling the remaining bytes).
- :func:`url_target` — where a URL string, resolved against a session page (an ``https`` base),
  points: relative (same origin), or an authority with a scheme, host and port. It follows the
  basic URL parser's states that matter for the host: C0/space trimming, tab and newline
  removal, ``\\`` as ``/`` for special schemes, ``http:host`` without slashes (a special scheme
  other than the base's), any number of slashes, ``user:pass@`` and the port.
- :func:`is_internal` — whether a parsed host is one the technician's own network (or their
  machine) answers: non-global IPs, ``localhost`` and ``*.localhost``, single-label names and
  the local-only suffixes.

Pure functions, no I/O; nothing raises for bad input: failures are ``None`` (the browser would
refuse the URL too), which callers treat as "not allowed". Checked against Chromium's own
parser (``tests/relay/test_hosts_in_chromium.py``); where Chromium departs from the standard
(it escapes a space in a host, and skips IDNA checks on ASCII ``xn--`` labels) this parser
follows the standard, which only makes the relay refuse more.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_to_bytes

__all__ = [
    "SPECIAL_SCHEMES",
    "Host",
    "UrlTarget",
    "is_internal",
    "parse_host",
    "parse_ipv4",
    "url_target",
]

#: schemes the URL Standard calls *special*, with their default ports
SPECIAL_SCHEMES: dict[str, int | None] = {
    "http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21, "file": None,
}

#: forbidden domain code points (URL Standard §3.2): forbidden host code points, C0, % and DEL
_FORBIDDEN_DOMAIN = frozenset(
    "\x00\t\n\r #/:<>?@[\\]^|%\x7f" + "".join(chr(c) for c in range(0x20)))
#: name suffixes only a local network resolves
_LOCAL_SUFFIXES = (".localhost", ".local", ".lan", ".localdomain", ".home.arpa", ".internal",
                   ".intranet", ".corp", ".home")
#: label separators that IDNA maps to "."
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


@dataclass(frozen=True, slots=True)
class Host:
    """A host as a browser holds it after parsing: an IP address or an ASCII domain."""

    kind: Literal["ipv4", "ipv6", "domain"]
    #: the serialised host: dotted quad, ``[v6]`` or the lower-case ASCII domain
    text: str

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The IP address, for IPv4 and IPv6 hosts."""
        if self.kind == "ipv4":
            return ipaddress.IPv4Address(self.text)
        if self.kind == "ipv6":
            return ipaddress.IPv6Address(self.text[1:-1])
        return None


@dataclass(frozen=True, slots=True)
class UrlTarget:
    """Where a URL string leads from a session page."""

    #: False for a relative URL (same origin, whatever its path)
    absolute: bool
    scheme: str = "https"
    #: None for relative URLs and for schemes without a host (``mailto:``, ``javascript:``)
    host: Host | None = None
    #: the port written in the URL, else the scheme's default
    port: int | None = None


def _ipv4_number(part: str) -> int | None:
    """The URL Standard's IPv4 number parser (decimal, ``0x`` hex, leading-``0`` octal)."""
    if not part:
        return None
    radix = 10
    if part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) >= 2 and part[0] == "0":
        part, radix = part[1:], 8
    if not part:
        return 0
    digits = {10: "0123456789", 16: "0123456789abcdefABCDEF", 8: "01234567"}[radix]
    if any(ch not in digits for ch in part):
        return None
    return int(part, radix)


def _ends_in_number(domain: str) -> bool:
    parts = domain.split(".")
    if parts[-1] == "":
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    if last and all("0" <= ch <= "9" for ch in last):
        return True
    return _ipv4_number(last) is not None


def parse_ipv4(domain: str) -> ipaddress.IPv4Address | None:
    """The URL Standard's IPv4 parser: 1-4 parts; None if the browser would refuse the host."""
    parts = domain.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    if any(n > 255 for n in numbers[:-1]):
        return None
    if numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number * 256 ** (3 - index)
    return ipaddress.IPv4Address(value)


def _domain_to_ascii(domain: str) -> str | None:
    """UTS #46 processing as browsers apply it, for what matters to a host's identity."""
    mapped = unicodedata.normalize("NFKC", domain).translate(_DOTS).lower()
    labels = []
    for label in mapped.split("."):
        if label.isascii():
            if label.startswith("xn--"):
                # an A-label must decode (UTS #46 validity); browsers refuse the host otherwise
                try:
                    if not label[4:].encode("ascii").decode("punycode"):
                        return None
                except UnicodeError:
                    return None
            labels.append(label)
            continue
        try:
            labels.append("xn--" + label.encode("punycode").decode("ascii"))
        except UnicodeError:
            return None
    return ".".join(labels)


def parse_host(text: str) -> Host | None:
    """The host parser for special schemes; None where the browser's parser fails."""
    if text.startswith("["):
        if not text.endswith("]") or "%" in text:
            return None
        try:
            address = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            return None
        return Host("ipv6", f"[{address.compressed}]")
    try:
        domain = unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return None
    ascii_domain = _domain_to_ascii(domain)
    if not ascii_domain or any(ch in _FORBIDDEN_DOMAIN for ch in ascii_domain):
        return None
    if _ends_in_number(ascii_domain):
        ipv4 = parse_ipv4(ascii_domain)
        return None if ipv4 is None else Host("ipv4", str(ipv4))
    return Host("domain", ascii_domain)


def _strip(url: str) -> str:
    """Leading/trailing C0 controls and spaces trimmed, every tab and newline removed."""
    url = url.strip("".join(chr(c) for c in range(0x21)))
    return url.replace("\t", "").replace("\n", "").replace("\r", "")


def _scheme(url: str) -> tuple[str | None, str]:
    """(lower-case scheme, the rest) if ``url`` starts with ``scheme:``, else (None, url)."""
    if not url or not ("a" <= url[0].lower() <= "z"):
        return None, url
    for index, ch in enumerate(url):
        if ch == ":":
            return url[:index].lower(), url[index + 1:]
        if not (ch.isascii() and (ch.isalnum() or ch in "+-.")):
            break
    return None, url


def _authority(rest: str, scheme: str) -> UrlTarget | None:
    """Host and port from what follows the slashes; None if the browser would refuse it."""
    special = scheme in SPECIAL_SCHEMES
    end = len(rest)
    for index, ch in enumerate(rest):
        if ch in "/?#" or (special and ch == "\\"):
            end = index
            break
    authority = rest[:end]
    authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return None
        host_text, port_text = authority[:close + 1], authority[close + 1:]
        if port_text and not port_text.startswith(":"):
            return None
        port_text = port_text[1:]
    else:
        host_text, _, port_text = authority.partition(":")
    default = SPECIAL_SCHEMES.get(scheme)
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            return None
        port: int | None = int(port_text)
    else:
        port = default
    if not host_text:
        if special and scheme != "file":
            return None
        return UrlTarget(absolute=True, scheme=scheme, host=None, port=port)
    host = parse_host(host_text) if special else _opaque_host(host_text)
    if host is None:
        return None
    return UrlTarget(absolute=True, scheme=scheme, host=host, port=port)


def _opaque_host(text: str) -> Host | None:
    """A non-special scheme's host; still read as an IP or a domain, to judge where it goes."""
    return parse_host(text)


def url_target(url: str, base_scheme: str = "https") -> UrlTarget | None:
    """Where ``url`` leads when followed from a page whose scheme is ``base_scheme``.

    None when the browser would refuse to parse it (an invalid port, an IPv4-looking host out
    of range, forbidden characters in the host): a redirect there goes nowhere, and the relay
    treats it as refused.
    """
    url = _strip(url)
    scheme, rest = _scheme(url)
    if scheme is None:
        # relative to the session page: "//host", "\\host", "/\host" are scheme-relative
        if rest[:1] in ("/", "\\") and rest[1:2] in ("/", "\\"):
            return _authority(rest.lstrip("/\\"), base_scheme)
        return UrlTarget(absolute=False, scheme=base_scheme)
    if scheme in SPECIAL_SCHEMES:
        if scheme == base_scheme:
            # "special relative or authority": only two slashes (either kind) start a host
            if rest[:1] in ("/", "\\") and rest[1:2] in ("/", "\\"):
                return _authority(rest.lstrip("/\\"), scheme)
            return UrlTarget(absolute=False, scheme=scheme)
        # another special scheme: "special authority slashes" ignores missing or extra slashes
        return _authority(rest.lstrip("/\\"), scheme)
    if rest.startswith("//"):
        return _authority(rest[2:], scheme)
    return UrlTarget(absolute=True, scheme=scheme, host=None, port=None)


def is_internal(host: Host) -> bool:
    """True for hosts the technician's own network or machine answers (see the module doc)."""
    address = host.address
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address):
            mapped = address.ipv4_mapped or address.sixtofour
            if mapped is not None:
                return is_internal(Host("ipv4", str(mapped)))
        return not address.is_global or address.is_multicast or address.is_unspecified
    name = host.text.rstrip(".")
    return "." not in name or name == "localhost" or name.endswith(_LOCAL_SUFFIXES)
