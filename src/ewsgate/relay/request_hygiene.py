"""What a browser's request may carry to the device: header names and values, and the path.

A proxy and the server behind it must read a request the same way, or the difference is an
attack: a header one side ignores and the other obeys, a path one side normalises and the
other does not. Devices' embedded web servers are old, small and lenient (CGI gateways that
turn ``Content_Length`` into ``CONTENT_LENGTH``, path parsers that decode ``%2f`` and then walk
``..``), so the relay forwards only what leaves them nothing to interpret:

- **Header names with ``_``** are refused (400): CGI-style servers map ``_`` and ``-`` to the
  same variable, so ``Content_Length`` or ``X_Forwarded_Host`` would be read as the header the
  relay controls. No browser sends one.
- **Header values** with control characters other than HTAB (ANSI escapes land in logs and
  terminals), or with bytes at or above 0x80 (read differently by every device's charset), are
  refused (400). h11 has already refused NUL, CR and LF.
- **Forwarding and override headers** the client sent are stripped (:func:`stripped`): the
  ``X-Forwarded-*`` family, ``Forwarded``, ``Via``, the client-address spellings
  (``X-Real-IP``, ``X-Client-IP``, ``True-Client-IP``, ...), the URL overrides
  (``X-Original-URL``, ``X-Rewrite-URL``) and the method overrides. A device behind the relay
  must not take the browser's word for who or where it is.
- **Ambiguous targets are refused (400), not normalised**: a raw ``#``, ``\\``, a dot-segment
  (``.``/``..``, raw or percent-encoded), or ``%2f``, ``%5c``, ``%00`` in the path. Browsers
  never send any of these for a link they followed (they remove dot-segments, turn ``\\`` into
  ``/`` and keep fragments to themselves), so only a hand-made request has one; normalising it
  would mean the relay forwards and logs a path other than the one asked for, and forwarding it
  would let the device resolve it in its own way. Refusing is the only choice under which the
  relay, the device and the log agree on the path. The query string is not judged: it is
  data, and ``%2F`` is common there. A control character or a byte above 0x7f anywhere in the
  target is refused too (browsers percent-encode them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ewsgate.relay.hardening import Refusal

__all__ = ["STRIPPED_REQUEST_HEADERS", "check_header_fields", "check_target", "stripped"]

#: request headers never forwarded from the client (lower case); plus every ``x-forwarded-*``
STRIPPED_REQUEST_HEADERS = frozenset({
    b"forwarded", b"via", b"x-real-ip", b"x-client-ip", b"true-client-ip", b"client-ip",
    b"x-cluster-client-ip", b"cf-connecting-ip", b"fastly-client-ip", b"x-originating-ip",
    b"x-remote-ip", b"x-remote-addr", b"x-proxyuser-ip", b"x-host", b"x-original-host",
    b"x-original-url", b"x-rewrite-url", b"x-original-uri", b"x-override-url",
    b"x-http-method-override", b"x-http-method", b"x-method-override", b"x-http-destinationurl",
    b"x-proxy-url", b"x-forwarded", b"x-forwarder-for", b"front-end-https",
})

_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f-\xff]")
_BAD_TARGET_BYTE = re.compile(rb"[\x00-\x20\x7f-\xff]")
_BAD_PATH = re.compile(rb"[#\\]|%(?:2[fF]|5[cC]|00)")
_DOT_SEGMENT = re.compile(rb"(?:^|/)(?:\.|%2[eE]){1,2}(?:/|$)")


def stripped(lower_name: bytes) -> bool:
    """True for a client header that must not reach the device (see the module docstring)."""
    return lower_name in STRIPPED_REQUEST_HEADERS or lower_name.startswith(b"x-forwarded-")


def check_header_fields(items: Iterable[tuple[bytes, bytes]]) -> Refusal | None:
    """None if every (name, value) may be forwarded, else why the request is refused."""
    items = list(items)
    # one scan of all names and one of all values (joined by HTAB, which is allowed); the
    # culprit is looked for only when there is one
    if b"_" not in b"".join([name for name, _ in items]) and _BAD_VALUE.search(
            b"\t".join([value for _, value in items])) is None:
        return None
    for name, value in items:
        if b"_" in name:
            shown = name.decode("latin-1")
            return Refusal("header_name_underscore",
                           f"The header {shown!r} has an underscore in its name, which "
                           "servers may read as another header; browsers never send one. "
                           "Send it with hyphens.")
        bad = _BAD_VALUE.search(value)
        if bad is not None:
            shown = name.decode("latin-1")
            return Refusal("header_value_bad_byte",
                           f"The header {shown!r} contains the byte 0x{bad.group()[0]:02x}, "
                           "which the relay does not forward (control characters other than "
                           "tab, and bytes above 0x7f). Send it as plain ASCII.")
    return None


def check_target(target: bytes) -> Refusal | None:
    """None if the request target's path is unambiguous, else why it is refused."""
    if _BAD_TARGET_BYTE.search(target) is not None:
        return Refusal("target_bad_byte",
                       "The address contains a control character or a byte above 0x7f; "
                       "browsers percent-encode those. Send it percent-encoded.")
    path = target.split(b"?", 1)[0]
    if b"#" in target or _BAD_PATH.search(path) is not None:
        return Refusal("ambiguous_target",
                       "The address contains a '#', a backslash or an encoded '/', '\\' or NUL "
                       "in its path, which the device could read differently from the relay. "
                       "Use the address as the device's pages link to it.")
    if _DOT_SEGMENT.search(path) is not None:
        return Refusal("ambiguous_target",
                       "The address contains a '.' or '..' path segment (possibly "
                       "percent-encoded); the relay forwards only paths without them. "
                       "Use the address as the device's pages link to it.")
    return None
