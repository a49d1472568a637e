"""Rewrite what a device writes for its LAN into what works on the session origin.

A printer's embedded web server names itself the way its LAN sees it: ``Location:
http://10.0.0.5/login``, ``<a href="http://10.0.0.5/status">``, ``new WebSocket("ws://10.0.0.5/
panel")``, ``Set-Cookie: AuthCookie=..; Domain=10.0.0.5``. Through the relay the browser is on
``https://s-<id>.<domain>`` instead, so every such name is mapped to the session origin; a URL that
keeps the LAN name would leave the session (and be blocked by the CSP).

What is rewritten (:class:`LanRewriter`):

- headers: ``Location``, ``Content-Location``, ``Refresh`` (``5; url=...``), ``Link``;
- ``Set-Cookie``: the ``Domain`` attribute is removed, whatever it names (the device's IP, its
  host name, or the relay's parent domain, which would let one session's cookie reach every
  other session); cookies that would shadow the relay's own (``__Host-ewsgate*``) are dropped;
- bodies of HTML, CSS, JavaScript, JSON, XML and SVG: every absolute URL naming the device —
  ``http``, ``https``, ``ws``, ``wss`` or protocol-relative ``//host``, with or without a port,
  with plain or JSON-escaped slashes (``http:\\/\\/10.0.0.5``) — becomes ``https://<session>`` or
  ``wss://<session>``. Ports are rewritten when absent, 80/443, or one of the device's endpoints;
  a URL to another port is another service the session cannot reach and is left alone.

Bodies are rewritten as a stream (:class:`StreamRewriter`): each chunk is scanned with one
bytes regex, and the last few bytes that could still be the start of a URL are carried over to
the next chunk, so a URL split across chunks (or TCP segments) is rewritten exactly as if the body
had arrived in one piece; memory is bounded by the chunk size plus the carry. gzip and deflate
bodies are decompressed as a stream (:class:`BodyDecoder`, bounded output per step), rewritten
and sent uncompressed (``Content-Encoding`` and ``Content-Length`` dropped: the browser gets it
chunked). The proxy asks the device only for ``gzip, deflate`` so that no other coding arrives
for a body that needs rewriting.

Working on bytes keeps any ASCII-compatible charset intact (UTF-8, Latin-1, Shift_JIS): IPs and
host names are ASCII.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import urlsplit

from ewsgate.relay.upstream import DeviceView

__all__ = [
    "RESERVED_COOKIE_PREFIX",
    "BodyDecoder",
    "LanRewriter",
    "StreamRewriter",
    "is_internal_host",
    "rewritable_content_type",
]

#: cookies whose name starts with this belong to the relay; a device may never set them
RESERVED_COOKIE_PREFIX = "__host-ewsgate"

_REWRITABLE_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "text/css", "text/javascript", "application/javascript",
    "application/x-javascript", "application/ecmascript", "text/ecmascript", "application/json",
    "text/json", "text/xml", "application/xml", "image/svg+xml", "text/plain",
})

#: compressed bodies are decoded in steps of at most this many output bytes
DECODE_STEP = 64 * 1024


def rewritable_content_type(content_type: str | None) -> bool:
    """True for the textual types whose bodies may carry the device's absolute URLs."""
    if not content_type:
        return False
    main = content_type.split(";", 1)[0].strip().lower()
    return main in _REWRITABLE_TYPES or main.endswith("+json") or main.endswith("+xml")


def is_internal_host(host: str) -> bool:
    """True for loopback, private, link-local IPs and single-label or ``.local`` names."""
    host = host.strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host or host.endswith((".local", ".lan", ".localdomain", ".home.arpa"))
    return address.is_private or address.is_loopback or address.is_link_local or (
        address.is_unspecified)


class StreamRewriter:
    """Apply a regex substitution to a byte stream split into arbitrary chunks.

    ``max_match`` bounds the length of any match; ``hold`` (``max_match`` + 2 for the
    lookahead) trailing bytes are carried over until more data or :meth:`finish` decides them.
    The byte just before the carry is kept as context so that a lookbehind sees the original.
    """

    def __init__(self, pattern: re.Pattern[bytes], replace: Callable[[re.Match[bytes]], bytes],
                 max_match: int, anchors: Sequence[bytes] = (),
                 max_prefix: int = 0) -> None:
        """``anchors``: the host names in lower case; every match of ``pattern`` has one of
        them in its ``host`` group, at most ``max_prefix`` bytes after the match's start.
        ``bytes.find`` for each name is far faster than trying ``pattern`` at every byte.
        """
        self._pattern = pattern
        self._replace = replace
        self._hold = max_match + 2
        self._carry = b""
        self._context = b""
        self._anchors = tuple(anchors)
        self._max_prefix = max_prefix

    def _matches(self, buf: bytes, start: int) -> Iterator[re.Match[bytes]]:
        """The matches of ``pattern`` in ``buf[start:]``, left to right, as finditer gives."""
        if not self._anchors:
            yield from self._pattern.finditer(buf, start)
            return
        lowered = buf.lower()
        hits: list[int] = []
        for anchor in self._anchors:
            at = lowered.find(anchor, start)
            while at >= 0:
                hits.append(at)
                at = lowered.find(anchor, at + 1)
        hits.sort()
        pos = start
        for host_at in hits:
            if host_at < pos:
                continue
            for candidate in range(max(pos, host_at - self._max_prefix), host_at - 1):
                match = self._pattern.match(buf, candidate)
                if match is not None and match.start("host") == host_at:
                    yield match
                    pos = match.end()
                    break

    def feed(self, data: bytes) -> bytes:
        """Rewrite what can be decided now; keep the undecided tail for later."""
        return self._process(data, final=False)

    def finish(self) -> bytes:
        """Rewrite and return the carried tail at the end of the body."""
        return self._process(b"", final=True)

    def _process(self, data: bytes, *, final: bool) -> bytes:
        buf = self._context + self._carry + data
        start = len(self._context)
        limit = len(buf) if final else max(start, len(buf) - self._hold)
        out: list[bytes] = []
        pos = start
        for match in self._matches(buf, start):
            if match.start() >= limit:
                break
            out.append(buf[pos:match.start()])
            out.append(self._replace(match))
            pos = match.end()
        emit_end = max(pos, limit)
        out.append(buf[pos:emit_end])
        if emit_end > start:
            self._context = buf[emit_end - 1:emit_end]
        self._carry = buf[emit_end:]
        return b"".join(out)


class BodyDecoder:
    """Streaming gzip / deflate decoder with a bounded output per step."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        if coding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise ValueError(f"cannot decode content coding {coding!r}")
        self._first = True

    @staticmethod
    def supports(coding: str) -> bool:
        return coding in ("gzip", "x-gzip", "deflate")

    def decode(self, data: bytes) -> list[bytes]:
        """Decompressed output for ``data``, as pieces of at most :data:`DECODE_STEP` bytes."""
        pieces: list[bytes] = []
        try:
            piece = self._decoder.decompress(data, DECODE_STEP)
        except zlib.error:
            if not (self._first and self._coding == "deflate"):
                raise
            # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            piece = self._decoder.decompress(data, DECODE_STEP)
        self._first = False
        pieces.append(piece)
        while self._decoder.unconsumed_tail:
            pieces.append(self._decoder.decompress(self._decoder.unconsumed_tail, DECODE_STEP))
        return [piece for piece in pieces if piece]

    def flush(self) -> bytes:
        return self._decoder.flush()


class LanRewriter:
    """Maps one device's LAN names to one session origin (headers, cookies, bodies)."""

    def __init__(self, device: DeviceView, session_host: str) -> None:
        """``session_host`` is ``s-<id>.<domain>`` plus ``:port`` when not 443."""
        self.device = device
        self.session_host = session_host
        self._ports = {endpoint.port for endpoint in device.endpoints} | {80, 443}
        names = [device.ip]
        if ":" in device.ip:
            names = [f"[{device.ip}]"]
        if device.hostname:
            names.append(device.hostname)
        host_alternatives = b"|".join(
            re.escape(name.encode("ascii", "ignore")) for name in names)
        self.pattern = re.compile(
            rb"(?:(?<![A-Za-z0-9+.\-])(?P<scheme>https?|wss?):|(?<![A-Za-z0-9+.\-:/\\]))"
            rb"(?P<slashes>//|\\/\\/)"
            rb"(?P<host>" + host_alternatives + rb")"
            rb"(?::(?P<port>[0-9]{1,5}))?"
            rb"(?![A-Za-z0-9_\-]|\.[A-Za-z0-9]|:[0-9])",
            re.IGNORECASE,
        )
        self.max_match = len(b"https:") + 4 + max(len(n) for n in names) + 6
        self._anchors = [name.encode("ascii", "ignore").lower() for name in names]

    # -- bodies --------------------------------------------------------------------------

    def _replace(self, match: re.Match[bytes]) -> bytes:
        scheme = (match.group("scheme") or b"").lower()
        port_text = match.group("port")
        if port_text is not None and int(port_text) not in self._ports:
            return match.group(0)
        slashes = match.group("slashes")
        host = self.session_host.encode("ascii")
        if not scheme:
            return slashes + host
        new_scheme = b"wss" if scheme.startswith(b"ws") else b"https"
        return new_scheme + b":" + slashes + host

    def body_rewriter(self) -> StreamRewriter:
        """A fresh streaming rewriter for one response body."""
        return StreamRewriter(self.pattern, self._replace, self.max_match, self._anchors,
                              max_prefix=len(b"https:") + 4)

    def rewrite_text(self, text: str) -> str:
        """Rewrite a complete (header) value."""
        rewriter = self.body_rewriter()
        raw = text.encode("latin-1", "replace")
        return (rewriter.feed(raw) + rewriter.finish()).decode("latin-1")

    # -- headers -------------------------------------------------------------------------

    def rewrite_location(self, value: str) -> str:
        """``Location`` / ``Content-Location``: the device's absolute URLs → session origin."""
        return self.rewrite_text(value)

    def rewrite_refresh(self, value: str) -> str:
        """``Refresh: 5; url=http://10.0.0.5/x`` → the same on the session origin."""
        return self.rewrite_text(value)

    def rewrite_link(self, value: str) -> str:
        return self.rewrite_text(value)

    def leaves_session(self, location: str) -> str | None:
        """After rewriting: the host an absolute redirect goes to if it is internal and foreign.

        A device redirecting the technician's browser to an internal address (their own LAN,
        loopback) is refused; a redirect to a public site (a vendor's help page) is allowed.
        """
        try:
            parts = urlsplit(location.strip())
        except ValueError:
            return "an unparsable URL"
        if not parts.netloc:
            return None
        host = (parts.hostname or "").lower()
        if parts.netloc.lower() == self.session_host.lower():
            return None
        return host if is_internal_host(host) else None

    def rewrite_set_cookie(self, value: str) -> str | None:
        """Strip ``Domain`` (host-only cookies); None drops a cookie shadowing the relay's own."""
        parts = value.split(";")
        name = parts[0].split("=", 1)[0].strip()
        if name.lower().startswith(RESERVED_COOKIE_PREFIX) or name.lower().startswith(
                "__secure-ewsgate"):
            return None
        kept = [parts[0]]
        for attribute in parts[1:]:
            key = attribute.split("=", 1)[0].strip().lower()
            if key == "domain":
                continue
            if key == "path":
                path = attribute.split("=", 1)[1].strip() if "=" in attribute else ""
                if not path.startswith("/"):
                    continue
            kept.append(attribute)
        return ";".join(kept)
