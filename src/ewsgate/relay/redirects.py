"""Where a device may send the technician's browser: ``Location``, ``Refresh``, ``Link`` and
``<meta http-equiv=refresh>``, judged by the host the browser will actually connect to.

A device page runs on the session origin, so a redirect it sends is followed by the browser on
the technician's machine, inside their network. A hostile or compromised device could use
that to steer the browser to another host on the customer's LAN, to the technician's own
machine (``localhost``) or to another session on the relay. Every navigation target the device
writes is therefore parsed as a browser parses it (:mod:`.hosts`) and judged by
:class:`RedirectPolicy`:

- relative URLs and URLs on this session's own host and port pass;
- hosts under the relay's domain other than this session's, internal hosts (non-global IPs in
  any browser spelling, ``localhost``, ``*.localhost``, single-label and local-only names) and
  URLs the browser could not parse are refused;
- public hosts (a vendor's help site) pass.

Headers: the proxy refuses a response whose ``Location``, ``Refresh`` or any ``Link`` target is
refused and shows the relay's page instead. Bodies: :class:`MetaRefreshGuard` finds each
``<meta>`` tag in a streamed HTML body with the HTML tokenizer's attribute rules (quoted and
unquoted values, ``/`` separators, duplicate attributes ignored, character references decoded)
and points a refused ``http-equiv=refresh`` at :data:`REFUSED_PATH`, the relay's refusal page.
A ``<meta`` tag longer than :data:`MAX_TAG` bytes is renamed so that it is no tag the browser
acts on.

What this cannot stop: script on a device page that assigns ``location`` (no header or tag to
read); the CSP has no navigation directive browsers enforce. The relay's refusal of cross-site
requests into other sessions still holds there.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from ewsgate.relay.hosts import is_internal, url_target

__all__ = [
    "MAX_TAG",
    "REFUSED_PATH",
    "MetaRefreshGuard",
    "RedirectPolicy",
    "link_targets",
    "refresh_url",
]

#: the relay's page saying a navigation to an internal address was stopped
REFUSED_PATH = "/.ewsgate/refused"
#: longest ``<meta ...>`` tag read whole; longer ones are disabled
MAX_TAG = 4096

_WS = " \t\n\f\r"


def refresh_url(value: str) -> tuple[bool, str | None]:
    """The URL a ``Refresh`` declaration navigates to, per HTML's *shared declarative refresh
    steps*: (valid, url). ``(False, None)``: the browser ignores it; ``(True, None)``: it
    reloads the same page."""
    pos, end = 0, len(value)
    while pos < end and value[pos] in _WS:
        pos += 1
    start = pos
    while pos < end and value[pos].isascii() and value[pos].isdigit():
        pos += 1
    if pos == start and not (pos < end and value[pos] == "."):
        return False, None
    while pos < end and (value[pos] == "." or (value[pos].isascii() and value[pos].isdigit())):
        pos += 1
    if pos >= end:
        return True, None
    if value[pos] not in ";," + _WS:
        return False, None
    while pos < end and value[pos] in _WS:
        pos += 1
    if pos < end and value[pos] in ";,":
        pos += 1
    while pos < end and value[pos] in _WS:
        pos += 1
    if pos >= end:
        return True, None
    url = value[pos:]
    if value[pos:pos + 3].lower() == "url":
        probe = pos + 3
        while probe < end and value[probe] in _WS:
            probe += 1
        if probe < end and value[probe] == "=":
            probe += 1
            while probe < end and value[probe] in _WS:
                probe += 1
        pos = probe
        url = value[pos:]
    else:
        # partial "u"/"ur" prefixes are consumed before "skip quotes", as the steps say
        for letter in "url":
            if pos < end and value[pos].lower() == letter:
                pos += 1
            else:
                break
        url = value[pos:]
    if url[:1] in ("'", '"'):
        quote, url = url[0], url[1:]
        cut = url.find(quote)
        if cut >= 0:
            url = url[:cut]
    return True, url


def link_targets(value: str) -> list[str]:
    """The ``<URI-reference>`` of every link in a ``Link`` header value (RFC 8288)."""
    targets: list[str] = []
    pos = 0
    while True:
        start = value.find("<", pos)
        if start < 0:
            return targets
        close = value.find(">", start + 1)
        if close < 0:
            targets.append(value[start + 1:])
            return targets
        targets.append(value[start + 1:close])
        pos = close + 1


@dataclass(frozen=True, slots=True)
class RedirectPolicy:
    """Judges navigation targets written by one session's device (see the module docstring)."""

    #: ``s-<id>.<domain>`` (without the port)
    session_name: str
    #: the port browsers use for the session origin
    session_port: int
    #: the relay's domain: every other host under it is another session or the relay itself
    relay_domain: str

    def refusal(self, url: str) -> str | None:
        """None if the browser may follow ``url``; else the host it would have gone to."""
        target = url_target(url)
        if target is None:
            return "an address the browser cannot parse"
        if not target.absolute or target.host is None:
            return None
        host = target.host
        name = host.text.rstrip(".")
        if host.kind == "domain" and name == self.session_name:
            if target.port in (self.session_port, None) and target.scheme in ("https", "wss"):
                return None
            return f"{host.text}:{target.port}"
        if host.kind == "domain" and (
                name == self.relay_domain or name.endswith("." + self.relay_domain)):
            return host.text
        return host.text if is_internal(host) else None

    def refresh_refusal(self, value: str) -> str | None:
        valid, url = refresh_url(value)
        return self.refusal(url) if valid and url is not None else None

    def link_refusal(self, value: str) -> str | None:
        for target in link_targets(value):
            refused = self.refusal(target)
            if refused is not None:
                return refused
        return None


_NAME_END = frozenset(_WS + "/>")


def _scan_tag(buf: str, pos: int) -> tuple[int, dict[str, str]] | None:
    """Attributes of the tag whose name ends at ``pos`` and the index after its ``>``.

    The HTML tokenizer's states from *before attribute name* to the tag's end; None if the
    tag does not end within ``buf`` (EOF inside a tag: the browser drops it).
    """
    attrs: dict[str, str] = {}
    end = len(buf)
    while True:
        while pos < end and (buf[pos] in _WS or buf[pos] == "/"):
            pos += 1
        if pos >= end:
            return None
        if buf[pos] == ">":
            return pos + 1, attrs
        start = pos
        pos += 1  # the first character is part of the name, even "="
        while pos < end and buf[pos] not in _WS and buf[pos] not in "/>=":
            pos += 1
        name = buf[start:pos].lower()
        while pos < end and buf[pos] in _WS:
            pos += 1
        value = ""
        if pos < end and buf[pos] == "=":
            pos += 1
            while pos < end and buf[pos] in _WS:
                pos += 1
            if pos >= end:
                return None
            if buf[pos] in "\"'":
                close = buf.find(buf[pos], pos + 1)
                if close < 0:
                    return None
                value, pos = buf[pos + 1:close], close + 1
            else:
                start = pos
                while pos < end and buf[pos] not in _WS and buf[pos] != ">":
                    pos += 1
                value = buf[start:pos]
        if pos >= end:
            return None
        attrs.setdefault(name, html.unescape(value))


class MetaRefreshGuard:
    """Streams an HTML body; ``<meta http-equiv=refresh>`` to a refused target is redirected to
    the relay's refusal page. Memory: one chunk plus at most :data:`MAX_TAG` carried bytes."""

    def __init__(self, refused: Callable[[str], str | None]) -> None:
        """``refused(url)`` returns None for a target the browser may follow."""
        self._refused = refused
        self._carry = b""
        #: how many refresh declarations were redirected (for the access log)
        self.refused_count = 0

    def feed(self, data: bytes) -> bytes:
        return self._process(self._carry + data, final=False)

    def finish(self) -> bytes:
        return self._process(self._carry, final=True)

    def _process(self, buf: bytes, *, final: bool) -> bytes:
        self._carry = b""
        out: list[bytes] = []
        pos = 0
        # one lower-case copy and bytes.find: several times faster than a case-blind regex
        lowered = buf.lower()
        while True:
            start = lowered.find(b"<meta", pos)
            if start < 0:
                if not final:
                    # a "<meta" split across chunks: keep the last "<" and what follows it
                    tail = buf.rfind(b"<", max(pos, len(buf) - 5))
                    if tail >= 0:
                        out.append(buf[pos:tail])
                        self._carry = buf[tail:]
                        return b"".join(out)
                out.append(buf[pos:])
                return b"".join(out)
            name_end = start + 5
            if name_end >= len(buf) and not final:
                out.append(buf[pos:start])
                self._carry = buf[start:]
                return b"".join(out)
            if name_end < len(buf) and chr(buf[name_end]) not in _NAME_END:
                out.append(buf[pos:name_end])  # <metadata>, <meta-x>: another element
                pos = name_end
                continue
            window = buf[name_end:name_end + MAX_TAG].decode("latin-1")
            scanned = _scan_tag(window, 0)
            if scanned is None:
                if not final and len(buf) - start < MAX_TAG:
                    out.append(buf[pos:start])
                    self._carry = buf[start:]
                    return b"".join(out)
                # overlong (or cut off by the end of the body): make it no meta tag at all
                out.append(buf[pos:start] + b"<meta-disabled-by-relay")
                pos = name_end
                continue
            tag_end, attrs = scanned
            out.append(buf[pos:start])
            tag = buf[start:name_end + tag_end]
            if attrs.get("http-equiv", "").strip().lower() == "refresh":
                content = attrs.get("content", "")
                valid, url = refresh_url(content)
                if valid and url is not None and self._refused(url) is not None:
                    self.refused_count += 1
                    delay = content.strip().split(";", 1)[0].split(",", 1)[0].strip()
                    delay = delay if delay.replace(".", "").isdigit() else "0"
                    tag = (f'<meta http-equiv="refresh" content="{delay};url='
                           f'{REFUSED_PATH}">').encode("ascii")
            out.append(tag)
            pos = name_end + tag_end
