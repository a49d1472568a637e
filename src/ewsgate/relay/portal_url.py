"""The relay talks to the portal over HTTPS, unless both are on the same host.

What the relay sends the portal (its secret on every call, the OAuth code and verifier, the
session log) and what it takes from it (the keys tickets and tokens are checked with) must
not cross a network in the clear: a passive observer would learn the relay's secret, an active
one could hand the relay its own signing keys. So ``--portal-url`` must be ``https://``, or
``http://`` to a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``) — the demo and a
portal on the relay's own machine. Anything else is refused at start-up.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ewsgate.config import ConfigError

__all__ = ["is_loopback_host", "require_secure_portal_url"]


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal (no name lookup: a name may resolve anywhere)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_secure_portal_url(url: str) -> str:
    """``url`` if it is ``https://`` or ``http://`` to loopback; else :class:`ConfigError`."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return url
    host = parts.hostname or ""
    if parts.scheme == "http" and is_loopback_host(host):
        return url
    raise ConfigError(
        f"--portal-url {url}: plain http:// to {host or 'an unknown host'} would send the "
        "relay's secret and the users' sign-in codes in the clear, and let anyone on the path "
        "replace the portal's signing keys; use the portal's https:// URL (http:// is allowed "
        "only to a loopback address such as 127.0.0.1)")
