"""Cross-site navigation into a live session lands only on the session's start page.

:func:`ewsgate.relay.hardening.check_request_site` lets a top-level ``GET`` navigation from
another site through, because that is how the technician arrives (the portal's *Open device
web page* link). But any other site, or another session's device page, can also navigate the
technician's browser top-level to ``https://s-<id>.<domain>/reboot.cgi?now=1``, and that request
carries the session cookie (``SameSite=Lax`` sends it on top-level GETs). Embedded web servers
do act on GETs, so a navigation from elsewhere may reach only the start page, ``/``, which acts
on nothing. Any other target gets the relay's page explaining why it stopped, with a link the
technician can follow on purpose: that click comes from the session's own origin
(``Sec-Fetch-Site: same-origin``) and passes.

Redirects: browsers mark every request of a redirect chain with the least trusted site of the
chain, so after the portal's link the device's own ``302 /`` → ``/hp/device/Index`` arrives
``cross-site`` too, as does the relay's ``303`` back from the OAuth callback to the page first
asked for. :class:`Landings` remembers, for a short while, where such a chain was sent by the
relay's callback or by the device answering a navigation that was let in (same origin only),
and lets exactly those paths in as well: they are where the start page leads anyway, so
another site gains nothing by naming them.

Browsers that send no ``Sec-Fetch-Site`` cannot be told apart here; all current ones send it.
"""

from __future__ import annotations

from collections import OrderedDict
from urllib.parse import urljoin, urlsplit

from ewsgate.relay.hardening import Refusal

__all__ = ["LANDING_TTL", "START_PATH", "Landings", "check_navigation", "foreign_navigation",
           "same_origin_path"]

#: how long a redirect target stays open to the rest of its chain (seconds)
LANDING_TTL = 30.0
#: remembered redirect targets per session
MAX_LANDINGS = 16

#: where a navigation from another site may land
START_PATH = b"/"
_FOREIGN_SITES = frozenset({b"cross-site", b"same-site"})


def foreign_navigation(fields: dict[bytes, bytes]) -> bool:
    """True if the browser marked the request as coming from another site."""
    site = fields.get(b"sec-fetch-site")
    return site is not None and site.lower() in _FOREIGN_SITES


def same_origin_path(origin: str, base_target: str, location: str) -> str | None:
    """The path (and query) ``location`` leads to on ``origin``, resolved against the request
    ``base_target``; None if it leads anywhere else."""
    try:
        resolved = urlsplit(urljoin(origin + base_target, location.strip()))
        expected = urlsplit(origin)
    except ValueError:
        return None
    if (resolved.scheme, resolved.netloc.lower()) != (expected.scheme, expected.netloc.lower()):
        return None
    return (resolved.path or "/") + (f"?{resolved.query}" if resolved.query else "")


class Landings:
    """Per session: the paths a redirect chain from another site was sent to (pure)."""

    def __init__(self, ttl: float = LANDING_TTL, per_session: int = MAX_LANDINGS) -> None:
        self.ttl = ttl
        self.per_session = per_session
        self._paths: dict[str, OrderedDict[str, float]] = {}

    def allow(self, session_id: str, path: str, now: float) -> None:
        paths = self._paths.setdefault(session_id, OrderedDict())
        paths.pop(path, None)
        paths[path] = now + self.ttl
        while len(paths) > self.per_session:
            paths.popitem(last=False)
        if len(self._paths) > 10_000:
            for sid in [s for s, p in self._paths.items() if max(p.values()) < now]:
                del self._paths[sid]

    def allowed(self, session_id: str, path: str, now: float) -> bool:
        paths = self._paths.get(session_id)
        until = paths.get(path) if paths is not None else None
        return until is not None and now < until


def check_navigation(fields: dict[bytes, bytes], target: bytes,
                     landed: bool = False) -> Refusal | None:
    """None unless this is a navigation from another site to anything but the start page
    (or, with ``landed``, a path a redirect chain from the start page was sent to).

    ``fields``: the request's first header values by lower-case name. Called after
    :func:`~ewsgate.relay.hardening.check_request_site`, which has already refused every
    foreign request that is not a top-level ``GET``/``HEAD`` navigation.
    """
    site = fields.get(b"sec-fetch-site")
    if site is None or site.lower() not in _FOREIGN_SITES or target == START_PATH or landed:
        return None
    return Refusal("cross_site_navigation",
                   f"A link from another site ({site.decode('latin-1')}) led here. Links from "
                   "other sites may open only the device's start page, so that no page "
                   "elsewhere can make the device act in your name.")
