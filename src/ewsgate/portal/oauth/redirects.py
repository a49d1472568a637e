"""Where the portal may send a browser: same-origin paths after login, exact redirect URIs.

Two rules, each a pure function:

- :func:`safe_next_path` — the login page's ``next`` parameter. Only a same-origin *path* is
  accepted: it must start with one ``/``, and contain no backslash, no control character and no
  whitespace (browsers strip tabs and newlines and read ``\\`` as ``/``, which turns
  ``/\\evil.example`` or ``/\\t/evil.example`` into ``//evil.example``, a different origin — the
  oauth2-proxy open redirects CVE-2020-5233 and GHSA-j7px-6hwj-hpjg). Anything else falls back
  to ``/``: the portal never becomes an open redirector (RFC 9700 §4.11).
- :func:`redirect_uri_matches` — OAuth 2.1 §2.3.1 / RFC 9700 §2.1: the redirect URI of an
  authorization request must equal the registered one by simple string comparison; no
  normalisation, no prefix or pattern matching. :func:`check_registrable_redirect_uri` is the
  rule for what may be registered at all: absolute ``https``, no fragment, no user info.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

__all__ = ["check_registrable_redirect_uri", "redirect_uri_matches", "safe_next_path"]


def safe_next_path(candidate: str | None, default: str = "/") -> str:
    """Return ``candidate`` if it is a same-origin path (with optional query), else ``default``."""
    if not candidate or len(candidate) > 2048:
        return default
    if not candidate.startswith("/") or candidate.startswith("//"):
        return default
    if any(ch == "\\" or ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return default
    return candidate


def redirect_uri_matches(requested: str | None, registered: str) -> bool:
    """Exact string comparison (RFC 3986 §6.2.1 simple comparison), constant time."""
    if requested is None:
        return False
    return hmac.compare_digest(requested.encode("utf-8"), registered.encode("utf-8"))


def check_registrable_redirect_uri(uri: str) -> str:
    """Refuse a redirect URI that OAuth 2.1 forbids registering; return it unchanged."""
    parts = urlsplit(uri)
    if parts.scheme != "https":
        raise ValueError(f"redirect URI {uri!r} must use https")
    if not parts.hostname:
        raise ValueError(f"redirect URI {uri!r} must be absolute (https://host/path)")
    if parts.fragment or "#" in uri:
        raise ValueError(f"redirect URI {uri!r} must not contain a fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"redirect URI {uri!r} must not contain user information")
    return uri
