"""The relay's HTTP client for the portal: connections that never linger half-closed.

uvicorn (the portal) closes an idle keep-alive connection after 5 s. httpx closes a pooled
connection only when it next looks at the pool, so a relay that went quiet kept every pooled
connection in CLOSE-WAIT (the portal had closed its end, the relay had not) until its next
request. The relay talks to the portal rarely and in small requests (a log batch at most every
0.5 s, a token per sign-in, a session lookup when a tunnel drops), so it does not keep
connections alive at all: each request opens its own and the relay closes it when the answer
is read. The relay closes first, so its sockets end in TIME_WAIT, never CLOSE-WAIT, and nothing
piles up whatever the portal's keep-alive. The price is one TCP (and TLS) handshake per
request, at most a few per second per relay.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["PORTAL_LIMITS", "portal_client"]

#: no idle connection is kept (keep-alive 0 s, below the portal's 5 s)
PORTAL_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=0,
                             keepalive_expiry=0.0)


def portal_client(*, verify: Any = True, timeout: float = 10.0) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for calls to the portal (see the module docstring)."""
    return httpx.AsyncClient(verify=verify, timeout=timeout, limits=PORTAL_LIMITS)
