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

Browsers that send no ``Sec-Fetch-Site`` cannot be told apart here; all current ones send it.
"""

from __future__ import annotations

from ewsgate.relay.hardening import Refusal

__all__ = ["START_PATH", "check_navigation"]

#: where a navigation from another site may land
START_PATH = b"/"
_FOREIGN_SITES = frozenset({b"cross-site", b"same-site"})


def check_navigation(fields: dict[bytes, bytes], target: bytes) -> Refusal | None:
    """None unless this is a navigation from another site to anything but the start page.

    ``fields``: the request's first header values by lower-case name. Called after
    :func:`~ewsgate.relay.hardening.check_request_site`, which has already refused every
    foreign request that is not a top-level ``GET``/``HEAD`` navigation.
    """
    site = fields.get(b"sec-fetch-site")
    if site is None or site.lower() not in _FOREIGN_SITES or target == START_PATH:
        return None
    return Refusal("cross_site_navigation",
                   f"A link from another site ({site.decode('latin-1')}) led here. Links from "
                   "other sites may open only the device's start page, so that no page "
                   "elsewhere can make the device act in your name.")
