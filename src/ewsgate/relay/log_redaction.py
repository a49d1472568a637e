"""What the Remote Technician Log may show of a URL or a detail: no secrets, no terminal
escapes, no silent truncation.

A device and a browser both write into the log (the URL, the device's error text), and people
read it in the portal, in CSV exports and in terminals. So, for every URL (the device's paths
as much as the relay's own):

- the values of secret query parameters (:data:`SECRET_PARAMETERS`: ``access_token``, ``token``,
  ``password``, ``pwd``, ``passwd``, ``secret``, ``key``, ``community``, ``code``, and ``state``
  on the relay's own paths) become ``…``; names are matched case-insensitively after
  percent-decoding, so ``Pass%77ord=`` is caught too, and the name stays so the log still shows
  that one was sent;
- control characters (C0, DEL, C1) and backslashes are escaped as ``\\xNN``, so an entry
  cannot rewrite a terminal or forge a line;
- a URL longer than :data:`MAX_URL` characters is cut and ends in ``…[+N bytes]``, N being how
  many UTF-8 bytes were left out, so a reader sees it was cut and by how much.

Details (free text from the relay and the device) are escaped the same way and capped with the
same marker. Pure functions.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["MAX_DETAIL", "MAX_URL", "SECRET_PARAMETERS", "log_detail", "log_url"]

MAX_URL = 2048
MAX_DETAIL = 500
SECRET_PARAMETERS = frozenset({
    "access_token", "token", "password", "pwd", "passwd", "secret", "key", "community", "code",
})
#: only on the relay's own paths (the OAuth callback's state is bound to the PKCE verifier)
_RELAY_SECRET_PARAMETERS = SECRET_PARAMETERS | {"state"}
_RELAY_PATH_PREFIX = "/.ewsgate/"
REDACTED = "\u2026"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _cap(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters with a ``…[+N bytes]`` marker if longer."""
    if len(text) <= limit:
        return text
    keep = text[:limit - 24]
    # never cut inside an escape sequence
    cut = keep.rfind("\\x", len(keep) - 3)
    if cut >= 0:
        keep = keep[:cut]
    left = len(text.encode("utf-8")) - len(keep.encode("utf-8"))
    return f"{keep}{REDACTED}[+{left} bytes]"


def _redact_query(query: str, names: frozenset[str]) -> str:
    parts = []
    for part in query.split("&"):
        name, equals, _value = part.partition("=")
        if equals and unquote(name).strip().lower() in names:
            parts.append(f"{name}={REDACTED}")
        else:
            parts.append(part)
    return "&".join(parts)


def log_url(url: str) -> str:
    """``url`` as the log records it (see the module docstring)."""
    path, mark, query = url.partition("?")
    if mark:
        query, hash_mark, fragment = query.partition("#")
        names = _RELAY_SECRET_PARAMETERS if path.startswith(_RELAY_PATH_PREFIX) else (
            SECRET_PARAMETERS)
        url = f"{path}?{_redact_query(query, names)}{hash_mark}{fragment}"
    return _cap(_escape(url), MAX_URL)


def log_detail(detail: str | None) -> str | None:
    """A detail as the log records it: escaped and capped with the marker."""
    if detail is None:
        return None
    return _cap(_escape(detail), MAX_DETAIL)
